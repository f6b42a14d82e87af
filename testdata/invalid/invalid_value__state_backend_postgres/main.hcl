settings {
  state {
    backend   = "postgres"
    url       = "postgres://berth@db/berth"
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
