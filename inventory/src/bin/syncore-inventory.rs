//! `syncore-inventory`: the loopback inventory service as a process.
//!
//! ```text
//! syncore-inventory --port 0 --print-port [--latency-ms 20] [--fail-next 3] [--hang] [--token T]
//! ```
//! Serves until killed. With `--print-port` the bound port is printed on stdout, alone on
//! its line, once the service accepts connections.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use syncore_inventory::{Faults, Inventory};

/// The loopback inventory service (networks, instances, ports).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The port to bind; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Print the bound port on stdout once listening.
    #[arg(long)]
    print_port: bool,
    /// Every /v1 request waits this many milliseconds first.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The next N /v1 requests answer 500.
    #[arg(long, default_value_t = 0)]
    fail_next: u32,
    /// /v1 requests never get an answer.
    #[arg(long)]
    hang: bool,
    /// /v1 requests need `Authorization: Bearer <TOKEN>` (otherwise 401).
    #[arg(long)]
    token: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let faults = Faults {
        latency_ms: args.latency_ms,
        fail_next: args.fail_next,
        hang: args.hang,
    };
    let inventory = match Inventory::start_with(SocketAddr::new(args.bind, args.port), faults) {
        Ok(inventory) => inventory,
        Err(e) => {
            eprintln!(
                "syncore-inventory: cannot listen on {}:{}: {e}",
                args.bind, args.port
            );
            return std::process::ExitCode::from(1);
        }
    };
    inventory.require_token(args.token.as_deref());
    if args.print_port {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", inventory.addr().port());
        let _ = out.flush();
    }
    eprintln!("syncore-inventory: serving {}", inventory.origin());
    inventory.wait();
    std::process::ExitCode::SUCCESS
}
