//! `sluice variable ...`

use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, failed, field, loose_json, print_json, print_table, text};

#[derive(Subcommand)]
pub enum VariableCommand {
    /// Create a variable (VALUE is JSON when it parses, else a string).
    Set {
        name: String,
        value: String,
        /// Replace the value if the variable exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Print a variable's value.
    Get { name: String },
    /// List variables.
    Ls,
    /// Delete a variable.
    Unset { name: String },
}

fn variable(name: &str) -> String {
    format!("variable {name:?}")
}

pub async fn run(ctx: &Ctx, command: VariableCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        VariableCommand::Set {
            name,
            value,
            overwrite,
        } => {
            let value = loose_json(&value);
            match c.create_variable(&name, &value).await {
                Ok(_) => {}
                Err(e) if e.status() == Some(409) => {
                    if !overwrite {
                        anyhow::bail!(
                            "{} already exists; pass --overwrite to replace its value",
                            variable(&name)
                        );
                    }
                    c.update_variable(&name, &value)
                        .await
                        .map_err(failed(variable(&name)))?;
                }
                Err(e) => return Err(failed(format!("setting {}", variable(&name)))(e)),
            }
            if ctx.json {
                let v = c
                    .variable_record(&name)
                    .await
                    .map_err(failed(variable(&name)))?;
                print_json(&v)?;
            } else {
                println!("Set variable {name:?}.");
            }
        }
        VariableCommand::Get { name } => {
            let v = c
                .variable_record(&name)
                .await
                .map_err(failed(variable(&name)))?;
            if ctx.json {
                print_json(&v)?;
            } else {
                // The bare value, so `$(sluice variable get x)` is useful in scripts.
                println!("{}", text(v.get("value")));
            }
        }
        VariableCommand::Ls => {
            let vars = c
                .list_variables()
                .await
                .map_err(failed("listing variables"))?;
            if ctx.json {
                return print_json(&Value::Array(vars));
            }
            let rows: Vec<Vec<String>> = vars
                .iter()
                .map(|v| vec![field(v, "name"), field(v, "value"), field(v, "tags")])
                .collect();
            print_table(&["NAME", "VALUE", "TAGS"], &rows);
        }
        VariableCommand::Unset { name } => {
            c.delete_variable(&name)
                .await
                .map_err(failed(variable(&name)))?;
            if !ctx.json {
                println!("Unset variable {name:?}.");
            }
        }
    }
    Ok(())
}
