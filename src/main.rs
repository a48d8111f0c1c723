//! The `agentledger` binary: parse arguments, run one command, map the
//! outcome to an exit code. All work lives in the library crates.

mod cli;
mod commands;
mod logs;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process, unless
/// `MIMALLOC_ALLOW_THP` says otherwise. mimalloc asks the kernel for huge
/// pages for its arena, and where memory is fragmented (a busy host, or
/// another engine running beside us) the kernel compacts memory on the
/// page fault before it can hand one over: `metrics` on 2M events took
/// 0.27-0.30 s or, in half the runs, 0.41-0.57 s of which a quarter second
/// was the kernel's. Without them the same command takes 0.30-0.32 s every
/// time (BENCHMARKS.md). This is what mimalloc itself does when
/// `MIMALLOC_ALLOW_THP=0` is set, and what PostgreSQL and Redis advise.
#[cfg(target_os = "linux")]
fn without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // A kernel that refuses (older than 3.15) leaves huge pages on, which
    // costs only speed; saying so on every command would be noise.
    let _speed_only = nix::sys::prctl::set_thp_disable(true);
}

#[cfg(not(target_os = "linux"))]
fn without_transparent_huge_pages() {}

/// mimalloc's full collection: what this thread's heap and the heaps of
/// ended threads hold freed goes back to the system now, not after its
/// purge delay (`agentledger_lake::memory`).
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointer and may be called from any thread
    // at any time; it only returns memory mimalloc holds freed.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> ExitCode {
    without_transparent_huge_pages();
    agentledger_lake::memory::set_release(release_freed_memory);
    let cli = cli::Cli::parse();
    logs::init(match &cli.command {
        cli::Command::Run(cli::RunArgs { log_format, .. })
        | cli::Command::Serve(cli::ServeArgs { log_format, .. }) => match log_format {
            cli::SummaryFormat::Text => logs::Style::Text,
            cli::SummaryFormat::Json => logs::Style::Json,
        },
        _ => logs::Style::Plain,
    });
    // Every DataFusion session of this process runs under this budget.
    if let Err(e) =
        agentledger_transforms::memory::configure(agentledger_transforms::memory::Settings {
            memory_limit: cli.memory_limit,
            spill_dir: cli.spill_dir.clone(),
        })
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Asked to stop (SIGTERM from Kubernetes or a scheduler, Ctrl-C): give
    // up the leases this process holds, so the next writer or batch need not
    // wait for them to expire, and exit. Nothing uncommitted is visible.
    // `serve` handles the signals itself: it stops taking requests and
    // commits what it accepted before it exits.
    // So does a cluster executor (Ballista's own shutdown).
    let serving = matches!(
        cli.command,
        cli::Command::Serve(_)
            | cli::Command::Cluster(cli::ClusterArgs {
                command: cli::ClusterCommand::Executor(_)
            })
    );
    runtime.spawn(async move {
        if serving {
            return;
        }
        let (name, code) = stop_signal().await;
        agentledger_lake::lease::release_all().await;
        eprintln!(
            "error: stopped by {name}; nothing it had not committed is in the lake, run it again"
        );
        std::process::exit(code);
    });
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if commands::is_broken_pipe(&e) {
                // `agentledger sql ... | head` is not a failure.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", commands::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Registers for SIGTERM and SIGINT now (so a signal from here on is
/// caught, not left to its default action) and returns a future that waits
/// for one: its name and the exit code a shell gives a process it ended
/// (128 + the signal's number). Call it within the runtime.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = (&'static str, i32)> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without handlers the default action (exit) stays in place.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => ("SIGTERM", 143),
            _ = int.recv() => ("SIGINT", 130),
        }
    }
}
