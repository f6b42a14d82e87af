backend "cpu" {
  runtime = "process"
  verfy_cmd = "true"
}
