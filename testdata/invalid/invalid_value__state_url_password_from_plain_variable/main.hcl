variable "pg_url" {
  default = "postgres://berth:hunter2@db/berth"
}

settings {
  state {
    backend   = "postgres"
    url       = var.pg_url
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
