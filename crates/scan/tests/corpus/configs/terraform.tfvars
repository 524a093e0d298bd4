region          = "westeurope"
resource_prefix = "acme-prod"

storage_connection_string = "DefaultEndpointsProtocol=https;AccountName=acmeprodlogs;AccountKey=CoGZI9/zTIuL2FrhhBwkF4ZfuZTxQ0UI80lOk88Op1KXVlcg2hTMXpVUOuJmVL0uQjHYhpubB/B5vTOERGDRxA==;EndpointSuffix=core.windows.net"
emulator_connection_string = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
client_secret = "deo8Q~G3RjJBT4C3QPFag1XedcImuZK7u4vNyDYF"
client_id       = "a1e6e44b-154f-4fa2-acba-f50d86ae4141"
tenant_id       = "e865e117-de7d-415b-aeaa-d1e1972e8474"

tfc_token = "wOMuy5TDq7lYB0.atlasv1.eoRhvCKmlcrCGza1VKb-pF6b1EB1OX4OVDpEQTQ0Pa6vIgLBbhQdf9J7OqUxO3i2Dcg"
cloudflare_zone_id = "e717c8cfd1e9c01eb1d7dbc524fa9729"
cloudflare_api_token = "B9lQpOdqsYdt0Sm9-GCZbN8djN2_Jmx_F-SLALj3"

