// Validates prometheus-operator objects against the CRD schemas of
// @kubernetes-models/prometheus-operator, for tests/kubernetes.rs:
//
//   node validate_crds.mjs NODE_MODULES OBJECT.json...
//
// Each file holds one object as JSON. Exits non-zero, naming the object and
// the schema's complaint, at the first one that does not validate.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
for (const file of files) {
  const obj = JSON.parse(readFileSync(file, "utf8"));
  const [group, version] = obj.apiVersion.split("/");
  if (group !== "monitoring.coreos.com") {
    console.error(`${file}: ${obj.apiVersion} is not prometheus-operator's`);
    process.exit(2);
  }
  // The package exports ES modules only; a file URL reaches each model.
  const model = join(modules, "@kubernetes-models/prometheus-operator", group, version, `${obj.kind}.js`);
  const mod = await import(pathToFileURL(model).href);
  try {
    new mod[obj.kind](obj).validate();
  } catch (e) {
    console.error(`${file}: ${obj.kind} ${obj.metadata.name}: ${e.message}`);
    process.exit(1);
  }
  console.log(`${file}: ${obj.kind} ${obj.metadata.name} valid`);
}
