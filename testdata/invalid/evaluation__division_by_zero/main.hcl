
host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime = "process"
}

model "a" {
  source = "/srv/models/m.gguf"
  size_gib = 8 % 0
  env      = { SHARDS = 4 / (2 - 2) }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
