//! `agentledger sample --out DIR`

use std::process::ExitCode;

use agentledger_ingest::sampler::{SampleOptions, generate};

use crate::cli::SampleArgs;

pub fn run(args: SampleArgs) -> anyhow::Result<ExitCode> {
    let options = SampleOptions {
        runs: args.runs,
        seed: args.seed,
        bad_lines: !args.no_bad_lines && !args.otlp,
        otlp: args.otlp,
        ..SampleOptions::default()
    };
    let s = generate(&args.out, &options)
        .map_err(|e| anyhow::anyhow!("cannot write the sample to {}: {e}", args.out.display()))?;
    match s.spans {
        Some(spans) => println!(
            "wrote {} runs to {} as OpenTelemetry spans: {spans} spans carrying {} events",
            s.runs,
            args.out.display(),
            s.events
        ),
        None => println!(
            "wrote {} runs to {}: {} distinct valid events, {} bad lines, {} exact repeats, {} conflicting repeats",
            s.runs,
            args.out.display(),
            s.events,
            s.bad_lines,
            s.duplicates,
            s.conflicting
        ),
    }
    for f in &s.files {
        println!("  {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}
