settings {
  state {
    backend   = "postgres"
    url       = "postgres://berth:hunter2@db/berth"
    workspace = "prod"
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
