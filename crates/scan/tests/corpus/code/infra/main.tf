resource "aws_db_instance" "orders" {
  engine         = "postgres"
  username       = "orders"
  password       = var.db_password
  instance_class = "db.t4g.medium"
}

resource "vault_generic_secret" "ci" {
  path      = "secret/ci"
  data_json = jsonencode({ token = data.vault_generic_secret.ci.data["token"] })
}

provider "datadog" {
  api_key = "80751d6663f1959233f4fe666282710f"
  app_key = "a644b31753ddb477aa64749665c6ab4dfe2091e2"
}

provider "github" {
  owner = "acme"
  token = "ghs_AydqxeyZysgBfeJSiQJJQ2Q1uu5IH42nMWww"
}

output "kms_key_arn" {
  value = "arn:aws:kms:eu-west-1:579534105905:key/ee0b323c-1639-4056-a7b7-6377c5990b4d"
}

