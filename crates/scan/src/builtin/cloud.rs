//! Cloud providers and hosting platforms.

use super::Spec;
use crate::rule::Check;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["akia", "asia", "abia", "acca"],
        positives: &[
            "aws_access_key_id = AKIAU24HYBUZOFA3YVCK",
            "export AWS_ACCESS_KEY_ID=ASIA4ZXKTD7JS2DV4WXV",
        ],
        negatives: &[
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            "dGVzdAKIAMYJ26YWJGLWOW5HQZm9v",
            "AKIAQW2PNHTV7V is too short",
        ],
        ..Spec::new(
            "aws-access-key-id",
            "AWS access key id",
            r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b",
        )
    },
    Spec {
        keywords: &[
            "aws_secret",
            "aws-secret",
            "awssecret",
            "secret_access_key",
            "secretaccesskey",
            "secret-access-key",
        ],
        entropy: Some(4.0),
        positives: &[
            "AWS_SECRET_ACCESS_KEY=QGdcagy7tAJgX9TPtQjzDD/ITmYNJUCLO7TttNjn",
            r#"aws_secret_access_key = "s18WKfKlsZa9SgVjSxn7Cb82H8jxEPcjzEGvvylM""#,
            "      SecretAccessKey: IcUFRp/tt5IjCLnh+h9eyU9gRwzx4+8WCzHdLKap",
        ],
        negatives: &[
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}",
            "secret_key = g94lH1PjWSHTvD7t/dv9y5XDivfOgwcoVlF/Vz4I",
        ],
        ..Spec::new(
            "aws-secret-access-key",
            "AWS secret access key (named in context)",
            r#"(?i:aws[_.-]?(?:secret[_.-]?(?:access[_.-]?)?key|sk)|secret[_.-]?access[_.-]?key)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        )
    },
    Spec {
        keywords: &["iqojb3jpz2lux2vj", "fwogzxivyxdze"],
        entropy: Some(4.0),
        positives: &[
            "aws_session_token = IQoJb3JpZ2luX2VjZ8APFPmotCdP7NyUv3t1D3d4j1TqQj7NYgaxn+sx4cyLwo5lXIS6lkaxlcpNyZMqMBOmAAXnbSu3FdKCBiw2C/RPCFz4NzLD4kcMdeGS3QnfEpIbs/VBXGnMn+iPib5ajROdQOdpubbj9axPQ/QFDLzlyL+4JBp2Eq+979iIPYB5ekiFXl7Uxd9tAiQ1SWVL9q/pPs6FHL5S2ex6AV3bgoOKEmet",
        ],
        negatives: &["aws_session_token = IQoJb3JpZ2luX2Vj0hZwNGewvYhwL5GwbEEVkS1mSNAxEp"],
        ..Spec::new(
            "aws-session-token",
            "AWS temporary session token",
            r"\b(?P<secret>(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE)[A-Za-z0-9/+=]{100,})",
        )
    },
    Spec {
        keywords: &["amzn.mws."],
        positives: &["mws_auth_token: amzn.mws.55a0c9eb-aaf4-44e3-afa1-ff02ba122544"],
        negatives: &["mws_auth_token: amzn.mws.<token>"],
        ..Spec::new(
            "aws-mws-key",
            "Amazon Marketplace Web Service auth token",
            r"\b(?P<secret>amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        )
    },
    Spec {
        keywords: &["aiza"],
        entropy: Some(3.5),
        positives: &[
            r#"const firebaseConfig = { apiKey: "AIzajLm-BGU3fxWS6UXk7cwrXzCTLAQJF1w7cvJ", projectId: "acme" };"#,
            "GOOGLE_API_KEY=AIzaZabRjappY8wJVBjGsiTlaCqn6n3nUupuDmb",
        ],
        negatives: &[
            r#"apiKey: "AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa""#,
            "AIza47yKgdvV1oKTxpLa21jD",
            "xAIzaNE5jcQnqCoaewmk7VlL2gFfovGBe38ew1Q7",
        ],
        ..Spec::new(
            "gcp-api-key",
            "Google Cloud / Firebase API key",
            r"\b(?P<secret>AIza[0-9A-Za-z_-]{35})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["\"private_key\""],
        entropy: None,
        check: Check::PrivateKey,
        positives: &[
            r#"  "private_key": "-----BEGIN PRIVATE KEY-----\n1vQ8Bl0T9khqI1np9r0V7aKIK0prWKowx4wAgqaw6imFZKvBBtDdKqq9X8R4hJot\nxnb1puj8qK3IbviXemCKJ03zyo+UHw6p/8DSYRM4qDgVB/rNIH12ZkKXv3UVk9m0\nj/Kdq22yIhv5O8Q0/I7e8SOP8oR2WseUtAm8ezSYdluqk63GxdQ4CrdsjLyoRXWw\nDZpBrmJwT64LbaD7q1pDwWw60MSZPt2g6Y6eJH5xfMKjIJ4oiQK7d+mPZCqZJl2Y\nsNOQRXdwFM2V8YnR04WFMbki2Uj8W2ZXhInn3+Tuo+ivXJuLGrD8syeFBuIcbctm\n+OsfV4hViUyaISb2Kt+2KoJDRsbSK+qe5hS/aQyCr2DMw4mZJQ0pccs3whBSKD04\nrqDgYmJc2a+jruZMdTg0o3++dS+o5HMLVOIzYx98v+324EyEttvHwS9EHy+97tsz\n+gcRFiCCwxx9s5KkItYOQIMvNyPpwm9PFpI0WCdOxIqCrKM6ezv8mkBp6gM3xz/P\ni7CY/YSFEYqWAn8U\n-----END PRIVATE KEY-----\n","#,
            r#"{"type": "service_account", "private_key": "-----BEGIN RSA PRIVATE KEY-----\nikDO4BiFsrsWtBHuqsT/C5LzgDnrUDNnd69sr3I8s5jYwhTT8tPHp1lPYSjXj5Rw\neEQtyy//Rhv4Vu4QBrtP7ouQJ1h5iZBOGdfldgUjUC04BHh8VcDuwsbuBY1usfUS\n9ujbDP21sn8lWLtZ7fJMdVA3bj3bKmA1H5HHFNd/g4kqcaJ9NM7TmyRW7A2gyzXS\nzANc4o+iaWOnq7XP95qqT7oLOAuGaGvpiIw5SCcwRXspAlV7Sb3Qz2nBVcqXNcUg\n1rrwjBAeTsiUe4K0qEgbwZjoV9V1hF7dcIavKmduyK1E0Ww5SUPeC4ZsDqX2oTGj\n5jeXyS4tXyuskcAz/uqzbuVLDkLj+RFgu5HHLycqlpAYIQKO770mEK6p7be3Ofty\ns1wVvM2FJFVdZa0r3pd8zCtTu6qbstPuiORXY8JOYjBBI6XY56tTvCea3xTHO9pc\nczKnD44//VEGLlmgEHmqA9d3Uj2Ti44rID3KYcAOqqnbDM9sPHDxK4xWE/vOzJO8\nljLyvYA=\n-----END RSA PRIVATE KEY-----", "client_email": "ci@acme.iam.gserviceaccount.com"}"#,
        ],
        negatives: &[
            r#"  "private_key": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n","#,
            r#"  "private_key_id": "223c3e66178ea8a26a9bbc956c3c5cfa50d6fb70","#,
        ],
        ..Spec::new(
            "gcp-service-account-key",
            "Google Cloud service account key (JSON private_key)",
            r#""private_key"\s*:\s*"(?P<secret>-----BEGIN (?:RSA )?PRIVATE KEY-----(?:\\[nr]|[A-Za-z0-9+/=])+?-----END (?:RSA )?PRIVATE KEY-----(?:\\n)?)""#,
        )
    },
    Spec {
        keywords: &["gocspx-"],
        positives: &["GOOGLE_CLIENT_SECRET=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"],
        negatives: &["GOOGLE_CLIENT_SECRET=GOCSPX-<client-secret>"],
        ..Spec::new(
            "gcp-oauth-client-secret",
            "Google OAuth client secret",
            r"\b(?P<secret>GOCSPX-[A-Za-z0-9_-]{28})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["ya29."],
        entropy: Some(3.5),
        positives: &[
            "Authorization: Bearer ya29.a04oR2pm_Moznw1ZhFX2O66STnIKd1BECYFYbCaXB3xvkZYSwax1k6iosFemoKGrp9IE-jk-nf5ha-AGs3vmMH8Uj5brKDIoDeN5TZHgj-hMP2VErqgnzHcmr4NdvtfGj5Ww-ZMQ8x7zgt89iOwvG3ln",
        ],
        negatives: &["the ya29. prefix marks Google access tokens"],
        ..Spec::new(
            "gcp-oauth-access-token",
            "Google OAuth access token",
            r"\b(?P<secret>ya29\.[0-9A-Za-z_-]{30,})",
        )
    },
    Spec {
        keywords: &["1//0"],
        entropy: Some(3.5),
        positives: &[
            r#""refresh_token": "1//01qtmlfSGDKm1sG0CanPNYTioTIJ7XSHAA3nO1W6YoXr2-oHqIKGUK5bhF-G6STbLZy4f987nchVxmozp5HNbqgFB4AtSQBATgIpD""#,
        ],
        negatives: &["see https://1//0 for nothing"],
        ..Spec::new(
            "gcp-oauth-refresh-token",
            "Google OAuth refresh token",
            r"(?:^|[^\w/])(?P<secret>1//0[0-9A-Za-z_-]{40,})",
        )
    },
    Spec {
        keywords: &[
            "accountkey",
            "account_key",
            "account-key",
            "storage_key",
            "storage-key",
            "storagekey",
            "azure_key",
            "azure-key",
        ],
        entropy: Some(4.0),
        check: Check::Base64Len(64),
        positives: &[
            "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey=nmXGiSuEkiIvgDkwUS965dx3WCIO6wo7xC+eQ129n7QT8qFg3MP69u/dkDhKn7Ghtfc3QM23JvaSbBsuBEfvXg==;EndpointSuffix=core.windows.net",
            r#"azure_storage_account_key = "KobMsoWgm3TcPrkXufA1hPtcMQQ3HCSjoFJZq0/UrAwSIft5Wo3atFKqTj5zVCXl7SaV2N297NbGlgP58NE6yg==""#,
        ],
        negatives: &[
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
            "AccountKey=gI6ms/NP7o5oTC1IZkcOwpGlmFssSd88b1J/o7hlQbg=",
        ],
        ..Spec::new(
            "azure-storage-account-key",
            "Azure Storage account key or connection string",
            r#"(?i:account[_.-]?key|storage[_.-]?key|azure[_.-]?(?:storage[_.-]?)?key)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9+/]{86}==)"#,
        )
    },
    Spec {
        keywords: &["sig="],
        entropy: Some(3.5),
        positives: &[
            "https://acmelogs.blob.core.windows.net/exports?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2026-01-01T00:00:00Z&sig=HJyF7T9SAhPyUaFs9DRar5CXWVvZvcBd9lkbhkPI8mm%3D",
        ],
        negatives: &[
            "https://acmelogs.blob.core.windows.net/exports?sv=2022-11-02&sig=<signature>",
        ],
        ..Spec::new(
            "azure-sas-token",
            "Azure shared access signature",
            r"(?i)\bsv=\d{4}-\d{2}-\d{2}&[^\s\x22'<>]{0,300}?\bsig=(?P<secret>[A-Za-z0-9%+/]{40,100}(?:%3D|=){0,2})",
        )
    },
    Spec {
        // The digit before `Q~` makes the keyword three bytes long: a
        // two-byte keyword would leave the prefilter too many candidates.
        keywords: &[
            "0q~", "1q~", "2q~", "3q~", "4q~", "5q~", "6q~", "7q~", "8q~", "9q~",
        ],
        positives: &[
            "AZURE_CLIENT_SECRET=USH8Q~UT_3HBxSMHfaNrbvVhiy1mF6FEEYgXQP02",
            r#"client_secret: "8gQ7Q~gpiZC3XjzHHVOX3VZe00oOuXx_Tew3E""#,
        ],
        negatives: &[
            "client_secret=bP88Q~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        ],
        ..Spec::new(
            "azure-ad-client-secret",
            "Microsoft Entra ID (Azure AD) client secret",
            r#"(?:^|[\\'"`\s>=:(,)])(?P<secret>[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34})(?:$|[\\'"`\s<),])"#,
        )
    },
    Spec {
        keywords: &["dop_v1_"],
        positives: &[
            "DIGITALOCEAN_TOKEN=dop_v1_5a118f8fb97d8429a70c5d398bada7866df9d16153cdcbe528da9e5bdefdeb0a",
        ],
        negatives: &["DIGITALOCEAN_TOKEN=dop_v1_c7d7a7fb56f3037b457fb5a650f619fa4a8c68c8"],
        ..Spec::new(
            "digitalocean-pat",
            "DigitalOcean personal access token",
            r"\b(?P<secret>dop_v1_[a-f0-9]{64})\b",
        )
    },
    Spec {
        keywords: &["doo_v1_"],
        positives: &[
            "access_token: doo_v1_ce48b5727ad321d20e501105f878c8cece2f35d24dbd5f3a2960a4b3a8f76357",
        ],
        negatives: &[
            "access_token: doo_v1_3721a4b1f8447a51a7c602fdb389ed2ec9471b360cd55dfe61f9c338b6329e4",
        ],
        ..Spec::new(
            "digitalocean-oauth-token",
            "DigitalOcean OAuth access token",
            r"\b(?P<secret>doo_v1_[a-f0-9]{64})\b",
        )
    },
    Spec {
        keywords: &["dor_v1_"],
        positives: &[
            "refresh_token: dor_v1_6db946e4bfcb47cb410da0ee3a893f67882208ad4d807197bd7d4f3dae7a8535",
        ],
        negatives: &[
            "refresh_token: dor_v1_CAA10CC6071D89EFF34D2FCD662BDD74FFDBB51594012328581A8DB080399359",
        ],
        ..Spec::new(
            "digitalocean-refresh-token",
            "DigitalOcean OAuth refresh token",
            r"\b(?P<secret>dor_v1_[a-f0-9]{64})\b",
        )
    },
    Spec {
        keywords: &["ltai"],
        positives: &["ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIfpXuLJ8B9mB72jrRxiY3"],
        negatives: &["ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIY7U7fY"],
        ..Spec::new(
            "alibaba-access-key-id",
            "Alibaba Cloud AccessKey id",
            r"\b(?P<secret>LTAI[A-Za-z0-9]{12,20})\b",
        )
    },
    Spec {
        keywords: &["accesskeysecret", "access_key_secret", "access-key-secret"],
        entropy: Some(3.5),
        positives: &[
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET=Vsr299fzaup5zto3ezoIwfd5pfEGRv",
            r#"AccessKeySecret: "hwcRamupbz4zujc0fgapW97ZrjV3bs""#,
        ],
        negatives: &["ALIBABA_CLOUD_ACCESS_KEY_SECRET=bfLV8PIYoxmm"],
        ..Spec::new(
            "alibaba-access-key-secret",
            "Alibaba Cloud AccessKey secret (named in context)",
            r#"(?i:access[_.-]?key[_.-]?secret)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9]{30})\b"#,
        )
    },
    Spec {
        keywords: &["ibm"],
        entropy: Some(3.5),
        positives: &["IBM_CLOUD_API_KEY=KJIP63ZrsbpqgttwSM45je7i3Gt7PdcShAQ0Ht-ukX95"],
        negatives: &["IBM_CLOUD_API_KEY=gPf6uM_l5vMcc5V10NQM"],
        ..Spec::new(
            "ibm-cloud-api-key",
            "IBM Cloud API key (named in context)",
            r#"(?i:ibm[\w.-]{0,20}?(?:api[_.-]?key|apikey))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9_-]{44})(?:[^\w-]|$)"#,
        )
    },
    Spec {
        keywords: &["hrku-aa"],
        entropy: Some(3.5),
        positives: &[
            "HEROKU_API_KEY=HRKU-AABYLJQSqWbr_tCaQnmEOnX9emc0MY0AIgcekeRk-OaZIiYfNYiyaYfoO-HF",
        ],
        negatives: &["HEROKU_API_KEY=HRKU-AAQS_SmhtHsTFReoguc-Ks"],
        ..Spec::new(
            "heroku-api-key-v2",
            "Heroku API key (HRKU- format)",
            r"\b(?P<secret>HRKU-AA[0-9A-Za-z_-]{58})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["heroku"],
        positives: &["HEROKU_API_KEY=6c35b665-5de5-4c30-af0b-50f442a8691c"],
        negatives: &[
            "HEROKU_APP_ID=61c981b1-62d8-4465-a2f9-68b9d2774161",
            "request_id=8125cdf9-2167-41e0-a55b-a66110176341",
        ],
        ..Spec::new(
            "heroku-api-key",
            "Heroku API key (UUID, named in context)",
            r#"(?i:heroku[\w.-]{0,20}?(?:api[_.-]?key|key|token))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"#,
        )
    },
    Spec {
        keywords: &["aqvn"],
        entropy: Some(3.5),
        positives: &["YC_API_KEY=AQVNsJlRK-xNuccxzZOguKWyIbwlhvsQqxbQb07R"],
        negatives: &["YC_API_KEY=AQVNQTf-mFsiFIHi"],
        ..Spec::new(
            "yandex-api-key",
            "Yandex Cloud API key",
            r"\b(?P<secret>AQVN[A-Za-z0-9_-]{35,38})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["cloudflare", "cf_api_token", "cf-api-token", "cf_token"],
        entropy: Some(3.5),
        positives: &[
            "CLOUDFLARE_API_TOKEN=J0n-YAZQVt3LkQFcpcXLBTqmbvcZ0tGFmT2QObQL",
            "cf_api_token: 9CPi0jl3L8IeV6_ucwtt48LE_KoJd4l7nqjVLaS1",
        ],
        negatives: &[
            "CLOUDFLARE_API_TOKEN=q_fYp4dxglmnx8PLEhdaKC1P",
            "CLOUDFLARE_ZONE=u-eotC-4v3nqKspSn7SMSznzZ2MTz_b_uDM2hHhB",
        ],
        ..Spec::new(
            "cloudflare-api-token",
            "Cloudflare API token (named in context)",
            r#"(?i:(?:cloudflare|cf)[_.-]?(?:api[_.-]?)?token)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9_-]{40})(?:[^\w-]|$)"#,
        )
    },
    Spec {
        keywords: &["cloudflare", "cf_api_key", "cf-api-key"],
        positives: &[
            "CLOUDFLARE_API_KEY=0e994aacdc50c4287161908de5f80643e96cb",
            "CF_API_KEY: 8e88efddb27ea811f1a9ecfb4d7310b3be7af",
        ],
        negatives: &["CLOUDFLARE_API_KEY=b93f0913940f8af136289e0da83f941a"],
        ..Spec::new(
            "cloudflare-global-api-key",
            "Cloudflare global API key (named in context)",
            r#"(?i:(?:cloudflare|cf)[_.-]?(?:global[_.-]?)?api[_.-]?key)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[a-f0-9]{37})\b"#,
        )
    },
    Spec {
        keywords: &["v1.0-"],
        positives: &[
            "origin_ca_key = v1.0-ffe6cdca5100c88a7696c161-b2c0a2d9f18c87acdb6417effb7b7d6f9fcc6fbe84a8a32fa0b59069d265945dca6364315ddf6e90e267aff2d7bd9219a27e336fd8afa18b1557c40f415610c417d5b27dab79674721",
        ],
        negatives: &["version v1.0-bebe97f853bf6a149f5414d0"],
        ..Spec::new(
            "cloudflare-origin-ca-key",
            "Cloudflare Origin CA key",
            r"\b(?P<secret>v1\.0-[a-f0-9]{24}-[a-f0-9]{146})\b",
        )
    },
    Spec {
        keywords: &["vercel"],
        entropy: Some(3.5),
        positives: &["VERCEL_TOKEN=UXBWhqUyRi08GTUbqSLLNy6E"],
        negatives: &[
            "VERCEL_ORG_ID=team_wrDxH3ljcrgIJdguDHxnLYSm",
            "VERCEL_TOKEN=3UzhNVAttJ",
        ],
        ..Spec::new(
            "vercel-token",
            "Vercel access token (named in context)",
            r#"(?i:vercel[\w.-]{0,20}?(?:token|key))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9]{24})\b"#,
        )
    },
    Spec {
        keywords: &["netlify"],
        entropy: Some(3.5),
        positives: &[
            "NETLIFY_AUTH_TOKEN=nfp_zLEeMUyjhMuQygrz7lbj9talLjE49S8RzuIc",
            "netlify_token: xkZQflT0ah7Lbv7a7ysK8Pxn_oxDWBtGsn1UG0k9VOm",
        ],
        negatives: &["NETLIFY_SITE_ID=02496d8a-65c1-4cbd-a019-dc5ba229273e"],
        ..Spec::new(
            "netlify-token",
            "Netlify access token (named in context)",
            r#"(?i:netlify[\w.-]{0,20}?(?:token|key|auth))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>(?:nfp_)?[A-Za-z0-9_-]{36,64})(?:[^\w-]|$)"#,
        )
    },
    Spec {
        keywords: &["fastly"],
        entropy: Some(3.5),
        positives: &["FASTLY_API_TOKEN=0nifn1dBPdjTsna_6TbLXIHIY-H_uTZG"],
        negatives: &["FASTLY_SERVICE_ID=j9z5VFM8c4QbWRKevfuWgF"],
        ..Spec::new(
            "fastly-api-token",
            "Fastly API token (named in context)",
            r#"(?i:fastly[\w.-]{0,20}?(?:token|key))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9_-]{32})(?:[^\w-]|$)"#,
        )
    },
    Spec {
        keywords: &["fo1_", "fm1a_", "fm1r_", "fm2_"],
        entropy: Some(4.0),
        positives: &[
            "FLY_API_TOKEN=fo1_VkOafli5k9pFUQOOHuDBPlNs_rg363A6v2qBVg6tMmo",
            "FLY_API_TOKEN=FlyV1 fm2_UFMvscksRiO/8chTCTLj8U4RCdvwZakP5q/9HpGVl6oVl6z9t1lfhm5KPTv8M2C9gSelRMNsDKi0Klr+LLbweRTcFgZC9AKq5Jq+OdQYa/B8zwzhCcV/b7V1sbb/M0IFC7UJjLpdklEKxqmzEB6YoabBDCl2DxmQdieJZAqNeSx3KjSRXyIS==",
        ],
        negatives: &["FLY_API_TOKEN=fo1_PY-0HuXdP4DR"],
        ..Spec::new(
            "flyio-access-token",
            "Fly.io access token",
            r"\b(?P<secret>fo1_[\w-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3})(?:[^\w+/=-]|$)",
        )
    },
    Spec {
        keywords: &["sha256~"],
        entropy: Some(3.5),
        positives: &[
            "oc login --token=sha256~SeM9AtJ-4i-vPCC_xrMyh9zsuTqC9-6jbPKMfxkJxQQ --server=https://api.ocp.acme:6443",
        ],
        negatives: &["oc login --token=sha256~<token>"],
        ..Spec::new(
            "openshift-user-token",
            "OpenShift user token",
            r"\b(?P<secret>sha256~[\w-]{43})(?:[^\w-]|$)",
        )
    },
];
