//! A generator of large, valid fleet configs for benchmarks: racks of GPU hosts, backends bound
//! to racks, and models spread over racks with distinct ports per rack.

use std::fmt::Write;
use std::path::Path;

/// Size of a generated fleet.
pub struct Fleet {
    pub hosts: usize,
    pub backends: usize,
    pub models: usize,
}

impl Fleet {
    /// The benchmark fleet of the foundation issue: 1,000 hosts, 50 backends, 5,000 models.
    pub const LARGE: Fleet = Fleet {
        hosts: 1000,
        backends: 50,
        models: 5000,
    };

    const RACK_SIZE: usize = 20;

    fn racks(&self) -> usize {
        self.hosts.div_ceil(Self::RACK_SIZE)
    }

    /// Writes `hosts.hcl`, `backends.hcl` and ten `models-N.hcl` files into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let racks = self.racks();
        let mut hosts = String::from(
            "settings {\n  parallelism = 50\n}\n\nvariable \"models_dir\" {\n  default = \"/srv/models\"\n}\n",
        );
        for i in 0..self.hosts {
            let rack = i / Self::RACK_SIZE;
            let b1 = rack % self.backends;
            let b2 = (rack + 1) % self.backends;
            writeln!(
                hosts,
                "\nhost \"gpu-r{rack:02}-{i:04}\" {{\n  connection {{\n    host     = \"10.{}.{}.{}\"\n    user     = \"ops\"\n    key_path = \"~/.ssh/id_ed25519\"\n  }}\n  capabilities {{\n    backends = [\"b{b1:02}\", \"b{b2:02}\", \"cpu\"]\n    gpus     = 4\n    vram_gib = 80\n  }}\n  labels  = {{ rack = \"r{rack:02}\", zone = \"z{}\" }}\n  run_dir = \"/var/lib/berth\"\n}}",
                rack / 250 + 1,
                rack % 250,
                i % Self::RACK_SIZE + 10,
                rack % 4
            )
            .unwrap();
        }
        std::fs::write(dir.join("hosts.hcl"), hosts).unwrap();

        let mut backends = String::from(
            "backend \"cpu\" {\n  runtime    = \"process\"\n  verify_cmd = \"command -v llama-server\"\n}\n",
        );
        for b in 0..self.backends {
            let racks_of: Vec<String> = (0..racks)
                .filter(|r| r % self.backends == b || (r + 1) % self.backends == b)
                .map(|r| format!("\"gpu-r{r:02}-*\""))
                .collect();
            writeln!(
                backends,
                "\nbackend \"b{b:02}\" {{\n  runtime      = \"process\"\n  host_filters = [{}]\n  verify_cmd   = \"nvidia-smi -L\"\n  env          = {{ CUDA_VISIBLE_DEVICES = \"0,1,2,3\" }}\n  args         = [\"--n-gpu-layers\", \"999\"]\n}}",
                racks_of.join(", ")
            )
            .unwrap();
        }
        std::fs::write(dir.join("backends.hcl"), backends).unwrap();

        let per_file = self.models.div_ceil(10);
        for f in 0..10 {
            let mut models = String::new();
            for m in f * per_file..((f + 1) * per_file).min(self.models) {
                let rack = m % racks;
                let slot = m / racks;
                let b1 = rack % self.backends;
                let b2 = (rack + 1) % self.backends;
                let policy = if m % 2 == 0 {
                    format!("labels   = {{ rack = \"r{rack:02}\" }}")
                } else {
                    format!("hosts    = [\"gpu-r{rack:02}-*\"]")
                };
                writeln!(
                    models,
                    "model \"m{m:05}.q4\" {{\n  source   = \"${{var.models_dir}}/model-{m:05}-q4_k_m.gguf\"\n  size_gib = {}\n  host_policy {{\n    {policy}\n    replicas = {}\n  }}\n  backend_policy {{\n    prefer = [\"b{b1:02}\", \"b{b2:02}\", \"cpu\"]\n  }}\n  runtime_defaults {{\n    port = {}\n  }}\n  launch {{\n    start_cmd  = \"llama-server -m {{source}} --host 0.0.0.0 --port {{port}} {{backend_args}}\"\n    probe_http = \"/v1/models\"\n  }}\n}}\n",
                    4 + m % 7,
                    1 + m % 2,
                    8000 + slot
                )
                .unwrap();
            }
            std::fs::write(dir.join(format!("models-{f}.hcl")), models).unwrap();
        }
    }
}

/// Peak resident memory of this process so far, in MiB (`VmHWM`).
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Median of some durations, in milliseconds.
pub fn median_ms(mut samples: Vec<std::time::Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}
