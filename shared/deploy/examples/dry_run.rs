//! `cargo run -p sluice-deploy --example dry_run -- FILE [--all]`: prints the plan as JSON.
use sluice_deploy::{DeployOptions, load, plan};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: dry_run FILE");
        std::process::exit(2);
    };
    let opts = DeployOptions {
        all: true,
        ..DeployOptions::default()
    };
    let env = |k: &str| std::env::var(k).ok();
    match load(std::path::Path::new(path)).and_then(|f| plan(&f, &opts, &env)) {
        Ok(planned) => {
            for p in planned {
                println!(
                    "{}",
                    serde_json::json!({"name": p.name, "flow": p.flow_name, "body": p.body,
                        "build": p.build_steps, "push": p.push_steps, "warnings": p.warnings})
                );
            }
        }
        Err(e) => {
            println!("ERROR: {e}");
        }
    }
}
