//! `syncore-serve DEPLOYMENT`: the service alone, the same code as `syncore serve` (which
//! the CLI runs through [`syncore_service::serve_main`]), without the CLI's scenario tools.

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: syncore-serve DEPLOYMENT");
        return std::process::ExitCode::from(2);
    };
    match syncore_service::serve_main(std::path::Path::new(&path)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
