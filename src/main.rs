//! `syncore`: run scenarios (or the built-in CORD-like demo), print plans, check scenario
//! files, replay traces, benchmark the engine on synthetic graphs, run the synchronizer as a
//! durable service (`serve`) and talk to one (`apply`, `get`, `status`).
//!
//! Exit codes: 0 converged (or: the check passed, the trace matched), 1 did not converge
//! (or: the trace did not match), 2 bad input.

mod bench;
mod check;
mod locate;
mod native;
mod plan;
mod plugins;
mod progress;
mod report;
mod run;
mod scenario;
mod svg;
mod threads;
mod trace;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{ColorChoice, Style};
use crate::scenario::{Problem, Source};

/// The synchronizer core's command line: scenarios, the demo, plans, replay, benchmarks.
#[derive(Debug, Parser)]
#[command(
    name = "syncore",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 converged (check: valid; replay: matched), 1 did not converge \
(replay: mismatch), 2 bad input.\nScenario format: docs/scenarios.md; the demo: \
`syncore run --print-demo`."
)]
struct Cli {
    /// Colors: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario to convergence (or its end time) and show what happened; without a
    /// file, run the built-in CORD-like demo.
    Run(RunArgs),
    /// Print the plan of a scenario without running any actuator (pretend mode, R13).
    Plan(PlanArgs),
    /// Validate a scenario and its schema; list every problem.
    Check {
        /// The scenario file (JSON, comments allowed).
        scenario: PathBuf,
    },
    /// Replay a trace written by `run --json` and report whether it matches.
    Replay {
        /// The trace (JSON lines).
        trace: PathBuf,
    },
    /// Benchmark planning and execution on a synthetic graph or a DAG1 file.
    Bench(BenchArgs),
    /// Run the synchronizer as a durable service (HTTP API, metrics, web page) from a
    /// deployment file; stops gracefully on SIGTERM or Ctrl-C.
    Serve {
        /// The deployment file (JSON: schema, actuators, secrets, settings, listen address,
        /// data directory).
        deployment: PathBuf,
    },
    /// Send a change set (a JSON file: `{"changes": [...]}`) to a running service; prints
    /// the versions assigned, or the typed error.
    Apply {
        /// The change set file (`-` for standard input).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print one object of a running service: status, hold reason, retry time, feedback.
    Get {
        /// The object's key.
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a running service's status summary.
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where the service is.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// The service's URL.
    #[arg(long, env = "SYNCORE_SERVER", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// Bearer token (required by a service listening on another address than loopback).
    #[arg(long, env = "SYNCORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario file; without it, the built-in demo.
    scenario: Option<PathBuf>,
    /// Write the trace as JSON lines: `--json` to stdout (instead of the timeline),
    /// `--json=FILE` to a file.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "-", value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw a Gantt chart of the run (a lane per worker) as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Draw the object dependency graph, colored by final status, as SVG.
    #[arg(long, value_name = "FILE")]
    graph: Option<PathBuf>,
    /// Print only the summary.
    #[arg(short, long)]
    quiet: bool,
    /// Most timeline lines printed.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    lines: usize,
    /// Override the scenario's worker count.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Override the scenario's seed.
    #[arg(long, value_name = "SEED")]
    seed: Option<u64>,
    /// Print the built-in demo scenario and exit.
    #[arg(long, conflicts_with = "scenario")]
    print_demo: bool,
    /// How to run: `sim`, a deterministic simulation in logical time (the default), or
    /// `threads`, the engine's own run loop and executor on real worker threads.
    #[arg(long, value_enum, default_value_t = Executor::Sim)]
    executor: Executor,
    /// With `--executor threads`: how many times faster than the wall clock scenario time
    /// runs (actuations sleep their duration divided by this).
    #[arg(long, default_value_t = 20, value_name = "N")]
    speed: u64,
}

/// How `run` executes a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Executor {
    /// Deterministic discrete-event simulation.
    Sim,
    /// The engine's Runner and Executor with real threads.
    Threads,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The scenario file; without it, the built-in demo.
    scenario: Option<PathBuf>,
    /// Print the plans as JSON lines.
    #[arg(long)]
    json: bool,
    /// Most rounds shown per change set.
    #[arg(long, default_value_t = 64, value_name = "N")]
    rounds: usize,
}

/// Graph shapes for `bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// `layered(W, L, D, seed, shuffle, components)` from docs/bench-graphs.md.
    Layered,
    /// A chain of `--nodes` objects.
    Chain,
    /// One root and `--nodes - 1` dependents.
    FanOut,
    /// `--nodes - 1` objects and one that depends on all of them.
    FanIn,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Graph shape.
    #[arg(long, value_enum, default_value_t = Shape::Layered)]
    shape: Shape,
    /// Layered: nodes per layer (W).
    #[arg(long, default_value_t = 100)]
    width: u32,
    /// Layered: layers (L).
    #[arg(long, default_value_t = 100)]
    layers: u32,
    /// Layered: predecessors per node (D).
    #[arg(long, default_value_t = 4)]
    degree: u32,
    /// Layered: generator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Layered: shuffle node ids and edges.
    #[arg(long)]
    shuffle: bool,
    /// Layered: independent components.
    #[arg(long, default_value_t = 1)]
    components: u32,
    /// Chain, fan-out, fan-in: node count.
    #[arg(long, default_value_t = 100_000)]
    nodes: u32,
    /// Read the graph from a DAG1 file instead.
    #[arg(long, value_name = "FILE")]
    dag: Option<PathBuf>,
    /// Worker threads of the engine's executor. Default: the machine's parallelism.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style::detect(cli.color);
    let code = match cli.command {
        Command::Run(args) => cmd_run(args, style),
        Command::Plan(args) => cmd_plan(args, style),
        Command::Check { scenario } => cmd_check(&scenario, style),
        Command::Replay { trace } => cmd_replay(&trace, style),
        Command::Bench(args) => cmd_bench(args),
        Command::Serve { deployment } => match syncore_service::serve_main(&deployment) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}: {e}", deployment.display());
                2
            }
        },
        Command::Apply { file, server } => {
            let text = if file == Path::new("-") {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
            } else {
                std::fs::read_to_string(&file)
            };
            match text {
                Ok(text) => client_call(&server, |c| c.apply(&text)),
                Err(e) => {
                    eprintln!("error: {}: cannot read the change set: {e}", file.display());
                    2
                }
            }
        }
        Command::Get { key, server } => client_call(&server, |c| c.object(&key)),
        Command::Status { server } => client_call(&server, |c| c.status()),
    };
    ExitCode::from(code)
}

/// Makes one request to a service and prints its answer: the JSON body to stdout when it
/// succeeded (exit 0), the service's error to stderr otherwise (exit 1 for a refusal, 2 when
/// the service cannot be reached).
fn client_call(
    server: &ServerArgs,
    call: impl FnOnce(&syncore_service::Client) -> Result<syncore_service::Answer, String>,
) -> u8 {
    let client = syncore_service::Client::new(&server.server, server.token.clone());
    match call(&client) {
        Ok(a) if a.ok() => {
            println!("{}", a.body.trim_end());
            0
        }
        Ok(a) => {
            eprintln!(
                "error: {} answered {}: {}",
                server.server,
                a.status,
                a.body.trim_end()
            );
            1
        }
        Err(e) => {
            eprintln!("error: cannot reach {}: {e}", server.server);
            2
        }
    }
}

/// Prints problems to stderr; returns exit code 2.
fn bad_input(problems: &[Problem], style: Style) -> u8 {
    let estyle = Style {
        color: style.color && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    for p in problems {
        eprintln!("{} {p}", estyle.red(&estyle.bold("error:")));
    }
    if problems.len() > 1 {
        eprintln!("{} problems found", problems.len());
    }
    2
}

fn load(path: Option<&Path>) -> Result<Source, Vec<Problem>> {
    match path {
        Some(p) => Source::read(p),
        None => scenario::demo().map_err(|p| vec![p]),
    }
}

fn cmd_check(path: &Path, style: Style) -> u8 {
    let src = match load(Some(path)) {
        Ok(s) => s,
        Err(p) => return bad_input(&p, style),
    };
    match check::prepare(&src) {
        Ok(setup) => {
            let sc = &src.scenario;
            println!(
                "{} {}: {} models, {} objects, {} timeline step{}, {} fault{}",
                style.green("ok"),
                src.file,
                setup.schema.models().len(),
                setup.keys.len(),
                sc.timeline.len(),
                if sc.timeline.len() == 1 { "" } else { "s" },
                sc.faults.len(),
                if sc.faults.len() == 1 { "" } else { "s" },
            );
            // Valid, but some objects can never converge, whatever the actuators do.
            for (key, why) in &setup.unconverged {
                println!(
                    "{} {}: object {key} would never converge: {why}",
                    style.yellow("warning:"),
                    src.file
                );
            }
            if setup.unconverged.is_empty() {
                0
            } else {
                println!(
                    "{} object{} would stay unconverged with every actuation succeeding",
                    setup.unconverged.len(),
                    if setup.unconverged.len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
                1
            }
        }
        Err(problems) => bad_input(&problems, style),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn cmd_run(args: RunArgs, style: Style) -> u8 {
    if args.print_demo {
        print!("{}", scenario::DEMO);
        return 0;
    }
    let mut src = match load(args.scenario.as_deref()) {
        Ok(s) => s,
        Err(p) => return bad_input(&p, style),
    };
    if let Some(w) = args.workers {
        src.scenario.settings.workers = w;
    }
    if let Some(seed) = args.seed {
        src.scenario.settings.seed = seed;
    }
    let setup = match check::prepare(&src) {
        Ok(s) => s,
        Err(p) => return bad_input(&p, style),
    };
    let json_stdout = args.json.as_deref() == Some(Path::new("-"));
    let mut progress = progress::Progress::new(setup.keys.len(), !json_stdout && !args.quiet);
    let result = match args.executor {
        Executor::Sim => run::simulate(&setup, args.json.is_some(), &mut |e| progress.event(e)),
        Executor::Threads => threads::execute(&setup, args.speed, &mut |e| progress.event(e)),
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            progress.clear();
            return bad_input(
                &[Problem {
                    file: setup.file.clone(),
                    pos: None,
                    message: e,
                }],
                style,
            );
        }
    };
    progress.clear();
    let trace = trace::to_json_lines(&setup, &result);
    let mut failed_write = false;
    if let Some(path) = &args.json {
        if json_stdout {
            print!("{trace}");
        } else if let Err(e) = write_file(path, &trace) {
            eprintln!("error: {e}");
            failed_write = true;
        }
    }
    if !json_stdout {
        let mut out = String::new();
        if !args.quiet {
            out.push_str(&header(&setup, style));
            out.push_str(&report::timeline(
                &result,
                style,
                report::Limits {
                    lines_max: args.lines,
                },
            ));
            out.push('\n');
        }
        out.push_str(&report::summary(&result, style));
        let _ = std::io::stdout().write_all(out.as_bytes());
    } else {
        eprint!("{}", report::summary(&result, Style { color: false }));
    }
    let title = format!("syncore run: {}", setup.name);
    if let Some(path) = &args.svg {
        if let Err(e) = write_file(path, &svg::gantt(&result, &title)) {
            eprintln!("error: {e}");
            failed_write = true;
        }
    }
    if let Some(path) = &args.graph {
        match svg::graph(&result.objects, &format!("{title}: objects")) {
            Ok(text) => {
                if let Err(e) = write_file(path, &text) {
                    eprintln!("error: {e}");
                    failed_write = true;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed_write = true;
            }
        }
    }
    if failed_write {
        2
    } else if result.converged {
        0
    } else {
        1
    }
}

fn header(setup: &check::Setup, style: Style) -> String {
    let desc = setup
        .description
        .as_ref()
        .map(|d| format!("\n  {}", style.dim(d)))
        .unwrap_or_default();
    let faults = setup.faults.len();
    format!(
        "{} {}{desc}\n  {} models · {} objects · {} change sets · {} fault{} · {} workers · seed {}\n\n",
        style.bold("syncore run:"),
        style.bold(&setup.name),
        setup.schema.models().len(),
        setup.keys.len(),
        setup.sets.len(),
        faults,
        if faults == 1 { "" } else { "s" },
        setup.settings.workers,
        setup.settings.seed
    )
}

fn cmd_plan(args: PlanArgs, style: Style) -> u8 {
    let src = match load(args.scenario.as_deref()) {
        Ok(s) => s,
        Err(p) => return bad_input(&p, style),
    };
    let setup = match check::prepare(&src) {
        Ok(s) => s,
        Err(p) => return bad_input(&p, style),
    };
    match plan::print(&setup, style, args.json, args.rounds.max(1)) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Err(e) => bad_input(
            &[Problem {
                file: setup.file.clone(),
                pos: None,
                message: e,
            }],
            style,
        ),
    }
}

fn cmd_replay(path: &Path, style: Style) -> u8 {
    match trace::replay(path) {
        Ok(outcome) => {
            println!("{}", outcome.text(style));
            if outcome.matched {
                0
            } else {
                1
            }
        }
        Err(problems) => bad_input(&problems, style),
    }
}

fn cmd_bench(args: BenchArgs) -> u8 {
    let dag = match &args.dag {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|b| bench::read_dag1(&b).map_err(|e| format!("{}: {e}", path.display())))
            .map(|d| (d, path.display().to_string())),
        None => match args.shape {
            Shape::Layered => bench::layered(
                args.width,
                args.layers,
                args.degree,
                args.seed,
                args.shuffle,
                args.components,
            )
            .map(|d| {
                (
                    d,
                    format!(
                        "layered(W={}, L={}, D={}, seed {}, {}, {} component{})",
                        args.width,
                        args.layers,
                        args.degree,
                        args.seed,
                        if args.shuffle {
                            "shuffled"
                        } else {
                            "not shuffled"
                        },
                        args.components,
                        if args.components == 1 { "" } else { "s" }
                    ),
                )
            }),
            Shape::Chain => Ok((bench::chain(args.nodes), format!("chain({})", args.nodes))),
            Shape::FanOut => Ok((
                bench::fan_out(args.nodes),
                format!("fan-out(1 -> {})", args.nodes.saturating_sub(1)),
            )),
            Shape::FanIn => Ok((
                bench::fan_in(args.nodes),
                format!("fan-in({} -> 1)", args.nodes.saturating_sub(1)),
            )),
        },
    };
    let (dag, name) = match dag {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if threads == 0 || threads > syncore::THREADS_MAX {
        eprintln!(
            "error: --threads must be between 1 and {}",
            syncore::THREADS_MAX
        );
        return 2;
    }
    match bench::run(&dag, name, threads) {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                print!("{}", bench::text(&r));
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
