//! `berth plan`: refresh, diff, show; `--out` saves the plan for `berth apply FILE`.

use berth_state::PlanFile;

use crate::cli::args::{Cli, PlanArgs, PlanFormat, PlanScope};
use crate::cli::ui::Ui;
use crate::cli::var_inputs;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::plan::{self, Operation, Plan, PlanOptions, render};
use crate::refresh;
use crate::session::{self, Prepared};

/// The command's tokio runtime: one for the whole command, since SSH connections live on it
/// (a second runtime would have to log in to every host again).
pub(crate) fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Refreshes (unless told not to) and plans.
pub(crate) fn make_plan(
    p: &Prepared,
    conns: &Connections,
    operation: Operation,
    scope: &PlanScope,
) -> Result<Plan> {
    let observed = scope
        .refresh
        .then(|| tokio().block_on(refresh::refresh(&p.ws, &p.view, conns)));
    let options = PlanOptions {
        operation,
        targets: scope.target.clone(),
        replace: scope.replace.clone(),
    };
    let hash = session::config_hash(&p.ws, &p.view.hmac_key());
    plan::plan(&p.ws, &p.view, observed.as_ref(), &options, &hash)
}

pub fn run(cli: &Cli, args: &PlanArgs, ui: &Ui) -> Result<u8> {
    let p = session::prepare(&cli.dir, &var_inputs(cli), "plan", &args.lock.options())?;
    let conns = Connections::new(&p.ws.config);
    let plan = make_plan(&p, &conns, Operation::Apply, &args.scope)?;
    match args.format {
        PlanFormat::Text => out!(
            "{}",
            render::text(
                &plan,
                render::Style {
                    color: ui.color && ui.stdout_tty
                }
            )
        ),
        PlanFormat::Json => outln!("{}", render::json(&plan)),
        PlanFormat::Markdown => out!("{}", render::markdown(&plan)),
    }
    if let Some(path) = &args.out {
        let file = PlanFile::new(
            &p.view.meta,
            plan.config_hash.clone(),
            env!("CARGO_PKG_VERSION"),
            serde_json::to_value(&plan).expect("serialisable"),
        );
        file.write(path)?;
        if args.format == PlanFormat::Text {
            outln!(
                "\nSaved the plan to {}: apply it with `berth apply {}`.",
                path.display(),
                path.display()
            );
        }
    }
    if args.detailed_exitcode && !plan.unobserved_hosts.is_empty() {
        return Ok(exit_codes::FAILURE);
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        exit_codes::CHANGES
    } else {
        exit_codes::SUCCESS
    })
}

/// Reads a saved plan and checks that it still applies to this state and config.
pub(crate) fn load_saved(path: &std::path::Path, p: &Prepared) -> Result<Plan> {
    let file = PlanFile::read(path)?;
    file.check_current(&p.view.meta)?;
    let hash = session::config_hash(&p.ws, &p.view.hmac_key());
    if file.config_hash != hash {
        return Err(Error::Usage {
            message: format!(
                "the config or its variables changed since the plan {} was made",
                path.display()
            ),
            help: "run `berth plan --out FILE` again and apply the new plan".into(),
        });
    }
    let version = file
        .plan
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(crate::plan::PLAN_JSON_VERSION)) {
        return Err(Error::Usage {
            message: format!(
                "{} holds a plan of format {}; this berth reads format {}",
                path.display(),
                version.map_or("(none)".to_string(), |v| v.to_string()),
                crate::plan::PLAN_JSON_VERSION
            ),
            help: "make the plan again with this berth".into(),
        });
    }
    serde_json::from_value(file.plan).map_err(|e| Error::Usage {
        message: format!(
            "{} holds a plan this berth cannot read: {e}",
            path.display()
        ),
        help: "make the plan again with this berth".into(),
    })
}
