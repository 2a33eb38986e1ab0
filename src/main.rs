//! The clock_exporter binary: parse flags, set up logging, run.

fn main() -> std::process::ExitCode {
    let (cli, matches) = clock_exporter::parse_args();
    clock_exporter::init_logging(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(clock_exporter::run(cli, matches)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "clock_exporter failed");
            std::process::ExitCode::FAILURE
        }
    }
}
