//! `agentledger user add NAME --role R [--tenant T ...]`: writes one user
//! of the SQL server, with a SCRAM-SHA-256 verifier of a password read at
//! the terminal (not echoed) or from stdin.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use agentledger_serve::pg::users::{Role, User, Users, Verifier};
use anyhow::{Context, bail};

use crate::cli::{UserArgs, UserCommand};

pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let UserCommand::Add(args) = args.command;
    let role: Role = args.role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let password = if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let first = rpassword::prompt_password(format!("password for {}: ", args.name))
            .context("cannot read the password")?;
        let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
        if first != again {
            bail!("the two passwords differ; nothing was written");
        }
        first
    };
    if password.is_empty() {
        bail!("empty password; nothing was written");
    }
    let mut users = if args.users.path.exists() {
        Users::load(&args.users.path)?
    } else {
        Users::default()
    };
    let verifier = Verifier::new(&password).map_err(|e| anyhow::anyhow!(e))?;
    let replaced = users.get(&args.name).is_some();
    users
        .upsert(User {
            name: args.name.clone(),
            role,
            tenants: args.tenants,
            scram: Some(verifier.text()),
        })
        .map_err(|e| anyhow::anyhow!(e))?;
    users.save(&args.users.path)?;
    println!(
        "{} user {} ({}) in {}",
        if replaced { "replaced" } else { "added" },
        args.name,
        role.name(),
        args.users.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
