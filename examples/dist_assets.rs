//! Writes what a package ships beside the binary, generated from the flags
//! so it cannot drift from them: the man page `clock_exporter.1` and the
//! bash, zsh and fish completions. `scripts/deb` runs it.
//!
//!     cargo run --example dist_assets -- OUT_DIR

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dist_assets OUT_DIR");
        return ExitCode::FAILURE;
    };
    match write(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dist_assets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(out: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let cmd = clock_exporter::documented_command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("1")
        .manual("clock_exporter")
        .source(format!("clock_exporter {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    std::fs::write(out.join("clock_exporter.1"), page)?;
    for (shell, file) in [
        (Shell::Bash, "clock_exporter.bash"),
        (Shell::Zsh, "_clock_exporter"),
        (Shell::Fish, "clock_exporter.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "clock_exporter", &mut text);
        std::fs::write(out.join(file), text)?;
    }
    Ok(())
}
