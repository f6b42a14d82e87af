//! Generated configs at and past the config size limits: one wide object, one long
//! `depends_on`, many models on one port, one big file, one long start command, and the largest
//! fleet the limits accept. Shared by the `config_limits` bench and the limits tests.

use std::fmt::Write;
use std::path::Path;

/// One config: file names and texts.
pub type Files = Vec<(String, String)>;

const HOST: &str = "host \"h0\" {\n  connection {\n    transport = \"local\"\n  }\n  capabilities {\n    backends = [\"cpu\"]\n  }\n}\n\nbackend \"cpu\" {\n  runtime = \"process\"\n}\n";

fn model(out: &mut String, id: &str, port: u16, extra: &str) {
    writeln!(
        out,
        "\nmodel \"{id}\" {{\n  source = \"/srv/models/{id}.gguf\"\n  runtime_defaults {{\n    port = {port}\n  }}\n  launch {{\n    start_cmd = \"llama-server -m {{source}} --port {{port}}\"\n  }}\n{extra}}}"
    )
    .unwrap();
}

fn one_file(text: String) -> Files {
    vec![("main.hcl".to_string(), text)]
}

/// A model whose `env` object has `keys` keys.
pub fn wide_object(keys: usize) -> Files {
    let mut env = String::from("  env = {\n");
    for i in 0..keys {
        writeln!(env, "    K{i} = \"v\"").unwrap();
    }
    env.push_str("  }\n");
    let mut text = HOST.to_string();
    model(&mut text, "m0", 8000, &env);
    one_file(text)
}

/// A model whose `depends_on` has `items` items, each naming another model: a defined one,
/// or (with `defined` false) a different undefined one each time.
pub fn long_depends_on(items: usize, defined: bool) -> Files {
    let deps: Vec<String> = (0..items)
        .map(|i| {
            if defined {
                "\"model.m1\"".to_string()
            } else {
                format!("\"model.x{i}\"")
            }
        })
        .collect();
    let mut text = HOST.to_string();
    model(
        &mut text,
        "m0",
        8000,
        &format!("  depends_on = [{}]\n", deps.join(", ")),
    );
    model(&mut text, "m1", 8001, "");
    one_file(text)
}

/// `models` models on one host and one port: one group (valid: one member runs at a time), or
/// no group (every model after the first is a port conflict).
pub fn shared_port(models: usize, grouped: bool) -> Files {
    let mut text = HOST.to_string();
    for i in 0..models {
        let extra = match (grouped, i) {
            (true, 0) => "  group   = \"g\"\n  default = true\n",
            (true, _) => "  group   = \"g\"\n",
            (false, _) => "",
        };
        model(&mut text, &format!("m{i}"), 8000, extra);
    }
    one_file(text)
}

/// A valid fleet of 1,000 hosts and `models` models spread over them, in files of at most
/// `file_bytes` bytes.
pub fn fleet(models: usize, file_bytes: usize) -> Files {
    let mut files = Vec::new();
    let mut hosts = String::from("backend \"cpu\" {\n  runtime = \"process\"\n}\n");
    for h in 0..1000 {
        writeln!(
            hosts,
            "\nhost \"h{h:04}\" {{\n  connection {{\n    host = \"10.0.{}.{}\"\n    user = \"ops\"\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n}}",
            h / 250,
            h % 250
        )
        .unwrap();
    }
    files.push(("hosts.hcl".to_string(), hosts));
    let mut text = String::new();
    for i in 0..models {
        let host = i % 1000;
        let extra = format!("  host_policy {{\n    hosts = [\"h{host:04}\"]\n  }}\n");
        model(
            &mut text,
            &format!("m{i:06}"),
            8000 + (i / 1000) as u16,
            &extra,
        );
        if text.len() > file_bytes - 1024 {
            files.push((
                format!("models-{:03}.hcl", files.len()),
                std::mem::take(&mut text),
            ));
        }
    }
    if !text.is_empty() {
        files.push((format!("models-{:03}.hcl", files.len()), text));
    }
    files
}

/// One file of about `bytes` bytes: a fleet of models on one host, each on its own port.
pub fn big_file(bytes: usize) -> Files {
    let mut text = HOST.to_string();
    let mut i = 0;
    while text.len() < bytes {
        let extra = format!("  size_gib = {}\n", 1 + i % 7);
        model(
            &mut text,
            &format!("m{i:07}"),
            1 + (i % 65_000) as u16,
            &extra,
        );
        i += 1;
    }
    one_file(text)
}

/// A model whose start command is `bytes` long.
pub fn long_start_cmd(bytes: usize) -> Files {
    let mut text = HOST.to_string();
    let pad = "x".repeat(bytes);
    writeln!(
        text,
        "\nmodel \"long\" {{\n  source = \"/srv/models/long.gguf\"\n  launch {{\n    start_cmd = \"llama-server -m {{source}} --port {{port}} # {pad}\"\n  }}\n}}"
    )
    .unwrap();
    one_file(text)
}

/// Writes a config into `dir`.
pub fn write(files: &Files, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}
