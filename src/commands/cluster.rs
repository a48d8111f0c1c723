//! `agentledger cluster scheduler|executor`: Ballista's processes, run in
//! this binary so they know agentledger's functions, tables and plan nodes.

use std::process::ExitCode;

use agentledger_cluster::{ExecutorSettings, SchedulerSettings};

use crate::cli::{ClusterArgs, ClusterCommand};

pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Scheduler(args) => {
            agentledger_cluster::run_scheduler(SchedulerSettings {
                bind: args.bind,
                external_host: args.external_host,
                executor_timeout: args.executor_timeout,
            })
            .await?;
        }
        ClusterCommand::Executor(args) => {
            let concurrency = args.concurrency.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let work_dir = args.work_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("agentledger-executor-{}", std::process::id()))
            });
            agentledger_cluster::run_executor(ExecutorSettings {
                scheduler: args.scheduler,
                concurrency,
                bind: args.bind,
                external_host: args.external_host,
                work_dir,
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
