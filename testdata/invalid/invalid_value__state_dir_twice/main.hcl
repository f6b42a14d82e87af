settings {
  state_dir = ".berth"
  state {
    backend = "sled"
    dir     = ".state"
  }
}

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
