//! `causeway`: run, validate, demo.

mod allocator;
mod demo;
mod logging;
mod process_metrics;
mod serve;
mod systemd;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "causeway",
    version,
    about = "A connectivity gateway for long-lived TCP connections: IBM MQ, FIX, SFTP"
)]
struct Cli {
    /// Log filter, e.g. `info` or `causeway_proxy=debug` (the RUST_LOG variable works too).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Process log lines as text or as JSON objects (for log pipelines).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file until SIGTERM or SIGINT.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file: exit 0 when valid, else print FILE:LINE:COL: problem and exit 1.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a built-in demo: a gateway in front of an active and a standby echo backend.
    Demo {
        /// Where the demo gateway listens.
        #[arg(long, default_value = "127.0.0.1:10000")]
        listen: SocketAddr,
        /// Where the demo's mutual-TLS listener listens.
        #[arg(long, default_value = "127.0.0.1:10444")]
        tls_listen: SocketAddr,
        /// Where the demo's listener that tunnels every connection listens.
        #[arg(long, default_value = "127.0.0.1:10445")]
        tunnel_listen: SocketAddr,
        /// Where the demo's FIX listener listens.
        #[arg(long, default_value = "127.0.0.1:10446")]
        fix_listen: SocketAddr,
        /// Where the demo's IBM MQ listener listens.
        #[arg(long, default_value = "127.0.0.1:10448")]
        mq_listen: SocketAddr,
        /// Where the demo's SSH (SFTP) listener listens.
        #[arg(long, default_value = "127.0.0.1:10022")]
        sftp_listen: SocketAddr,
    },
    /// Run an echo server (a test aid for the examples): it greets with NAME, then echoes.
    Echo {
        address: SocketAddr,
        #[arg(long, default_value = "echo")]
        name: String,
        /// Expect a PROXY header (v1 or v2) first; the greeting then reports the client's
        /// address and TLVs from it.
        #[arg(long)]
        proxy_protocol: bool,
    },
    /// Run a FIX acceptor (a test aid for the examples): answers a Logon with a Logon, a
    /// TestRequest with a Heartbeat, a NewOrderSingle with an ExecutionReport, a Logout with
    /// a Logout.
    FixAcceptor {
        address: SocketAddr,
        #[arg(long, default_value = "VENUE1")]
        comp_id: String,
        /// Sent as Text (58) in every Logon answer, to tell acceptors of one CompID apart.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print an argon2id hash of the password read from standard input (its first line),
    /// for `password_hash` of an SSH user. The password never goes into the config.
    HashPassword,
    /// Run an OTLP trace receiver (a test aid for the examples) that prints each span it
    /// receives on one line: PROTOCOL is `grpc` or `http` (protobuf at `/v1/traces`).
    TraceReceiver {
        address: SocketAddr,
        #[arg(long, default_value = "grpc")]
        protocol: String,
        /// Print nothing but, at the end, how many spans arrived (for benchmarks).
        #[arg(long)]
        quiet: bool,
    },
    /// Ask a running gateway to reload its configuration file (SIGHUP to PID): systemd's
    /// `ExecReload` without /bin/kill.
    Reload {
        #[arg(long)]
        pid: i32,
    },
    /// Run a test ext_authz server (a test aid for the examples), answering every check
    /// with VERDICT: `allow`, `deny`, `cluster:NAME` or `address:IP:PORT`.
    Authorizer {
        address: SocketAddr,
        #[arg(long, default_value = "allow")]
        verdict: String,
    },
}

/// The file parsed and checked, then every file it names opened and read.
fn validate(path: &std::path::Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let checked = runtime
        .map_err(|e| e.to_string())
        .and_then(|r| r.block_on(async { proxy::check_files(&loaded).map_err(|e| e.to_string()) }))
        .and_then(|()| admin_token_readable(&loaded));
    match checked {
        Ok(()) => {
            println!("{}: valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// The admin token file, read as a start reads it.
fn admin_token_readable(config: &config::Config) -> Result<(), String> {
    match config.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
        Some(path) => admin::Token::read(path).map(drop),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    logging::init(&cli.log, cli.log_format);
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Run { config } => match config::load(&config) {
            Ok(loaded) => serve::run(&config, loaded),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Demo {
            listen,
            tls_listen,
            tunnel_listen,
            fix_listen,
            mq_listen,
            sftp_listen,
        } => demo::run(demo::Addresses {
            listen,
            tls_listen,
            tunnel_listen,
            fix_listen,
            mq_listen,
            sftp_listen,
        }),
        Command::Echo {
            address,
            name,
            proxy_protocol,
        } => demo::echo_server(address, &name, proxy_protocol),
        Command::HashPassword => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err()
                || line.trim_end_matches(['\r', '\n']).is_empty()
            {
                eprintln!(
                    "give the password on standard input, e.g. `printf %s 'secret' | causeway hash-password`"
                );
                return ExitCode::FAILURE;
            }
            println!(
                "{}",
                ssh::credentials::hash_password(line.trim_end_matches(['\r', '\n']))
            );
            ExitCode::SUCCESS
        }
        Command::Authorizer { address, verdict } => demo::authorizer(address, &verdict),
        Command::Reload { pid } => {
            // SAFETY: kill(2) sends a signal; it touches no memory of ours.
            if pid <= 0 || unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
                eprintln!(
                    "cannot signal process {pid}: {}",
                    std::io::Error::last_os_error()
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Command::TraceReceiver {
            address,
            protocol,
            quiet,
        } => demo::trace_receiver(address, &protocol, quiet),
        Command::FixAcceptor {
            address,
            comp_id,
            name,
        } => demo::fix_acceptor(address, comp_id, name),
    }
}
