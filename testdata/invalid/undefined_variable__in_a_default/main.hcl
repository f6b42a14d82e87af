variable "root" {
  default = "/srv"
}

variable "models_dir" {
  default = "${var.root}/models"
}
