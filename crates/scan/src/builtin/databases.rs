//! Connection strings and URLs with passwords, HTTP credentials.

use super::Spec;
use crate::rule::{Check, Tier};

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["postgres"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            "DATABASE_URL=postgres://app:jMyUAaRM9Y3nP2k89IVG@db.internal:5432/orders",
            "SQLALCHEMY_DATABASE_URI = 'postgresql+psycopg2://report:g7qiCbly6yfe2FaJ@10.0.3.7/warehouse'",
        ],
        negatives: &[
            "DATABASE_URL=postgres://postgres:postgres@localhost:5432/dev",
            "DATABASE_URL=postgres://app:${DB_PASSWORD}@db.internal/orders",
            "DATABASE_URL=postgres://app@db.internal/orders",
        ],
        ..Spec::new(
            "postgres-connection-string",
            "PostgreSQL connection string with a password",
            r#"(?i)\bpostgres(?:ql)?(?:\+[a-z0-9]+)?://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["mysql", "mariadb"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &["DB_DSN=mysql://shop:y4e0OEk5tgSwfDc6dd@mysql.prod.acme:3306/shop"],
        negatives: &[
            "DB_DSN=mysql://root:root@127.0.0.1/shop",
            "mysql://shop:<password>@host/db",
        ],
        ..Spec::new(
            "mysql-connection-string",
            "MySQL / MariaDB connection string with a password",
            r#"(?i)\b(?:mysql|mariadb)(?:\+[a-z0-9]+)?://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["mongodb"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            "MONGO_URL=mongodb+srv://analytics:OX8GfmPNHu2HyTwYbOcPrUDz@cluster0.ab1cd.mongodb.net/events?retryWrites=true",
            "mongodb://api:ixTrLwxfpBBS31SBjCHo@mongo-0:27017,mongo-1:27017/app?replicaSet=rs0",
        ],
        negatives: &["MONGO_URL=mongodb+srv://<username>:<password>@cluster0.mongodb.net/"],
        ..Spec::new(
            "mongodb-connection-string",
            "MongoDB connection string with a password",
            r#"(?i)\bmongodb(?:\+srv)?://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["redis"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            "REDIS_URL=rediss://default:nQ6D00v8bKSx0AKFAeWPFnkYKgLfz94X@cache.acme.dev:6380/0",
            "redis://:MerEjMqAHMnuQ2dQMUJpOA1u@10.1.1.9:6379",
        ],
        negatives: &[
            "REDIS_URL=redis://localhost:6379/0",
            "REDIS_URL=redis://:redis@localhost:6379",
        ],
        ..Spec::new(
            "redis-connection-string",
            "Redis connection string with a password",
            r#"(?i)\brediss?://(?P<user>[^\s:/@"'<>]{0,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["amqp"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &["CELERY_BROKER_URL=amqps://worker:4so94ln9s9iX7vYncl94@mq.acme.dev:5671/jobs"],
        negatives: &["CELERY_BROKER_URL=amqp://guest:guest@localhost:5672//"],
        ..Spec::new(
            "amqp-connection-string",
            "AMQP (RabbitMQ) connection string with a password",
            r#"(?i)\bamqps?://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["password=", "pwd=", "password =", "pwd ="],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            r#""ConnectionStrings": { "Main": "Server=tcp:acme.database.windows.net,1433;Initial Catalog=orders;User ID=svc;Password=vOqltMQsri6S5QufyDds;Encrypt=True;" }"#,
            "Data Source=sql01;Initial Catalog=hr;User Id=app;Pwd=dnNbLnKIeExQITss;",
        ],
        negatives: &[
            "Server=sql01;Database=hr;Trusted_Connection=True;",
            "Server=sql01;User Id=sa;Password=<password>;",
        ],
        ..Spec::new(
            "mssql-connection-string",
            "SQL Server (ADO.NET) connection string with a password",
            r#"(?i)\b(?:Server|Data Source)\s*=[^"'\r\n]*?;\s*(?:Password|Pwd)\s*=\s*(?P<secret>[^;"'\s]{1,128})"#,
        )
    },
    Spec {
        keywords: &["sqlserver://", "mssql://", "mssql+"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            "MSSQL_URL=sqlserver://etl:1fDxUezzacEddSdDK4bL@sql01.acme.local:1433?database=dw",
        ],
        negatives: &["MSSQL_URL=sqlserver://sql01.acme.local:1433?database=dw"],
        ..Spec::new(
            "mssql-url-connection-string",
            "SQL Server URL with a password",
            r#"(?i)\b(?:sqlserver|mssql(?:\+[a-z0-9]+)?)://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[^\s/"'<>@]+"#,
        )
    },
    Spec {
        keywords: &["jdbc:"],
        entropy: None,
        check: Check::UrlPassword,
        positives: &[
            "spring.datasource.url=jdbc:postgresql://db:5432/app?user=app&password=q22X0AcfGYt8iE9JUT",
        ],
        negatives: &["spring.datasource.url=jdbc:postgresql://db:5432/app?user=app"],
        ..Spec::new(
            "jdbc-connection-string",
            "JDBC URL with a password parameter",
            r#"(?i)\bjdbc:[a-z0-9]+:[^\s"'<>]{0,300}?[?&;](?:password|pwd)=(?P<secret>[^\s&;"'<>]{1,128})"#,
        )
    },
    Spec {
        keywords: &["://"],
        entropy: None,
        check: Check::UrlPassword,
        tier: Tier::Broad,
        positives: &[
            "pip install --index-url https://deploy:tzWOaBmUlp6oZOx4XmG9MEHE@pypi.acme.dev/simple/ acme-core",
            "ftp://backup:IzcKBMta0NmrcYVI@files.acme.dev/nightly/",
        ],
        negatives: &[
            "https://user:password@example.com/",
            "https://docs.acme.dev/login?next=/home",
        ],
        ..Spec::new(
            "url-credentials",
            "URL with a user name and password",
            r#"(?i)\b(?:https?|ftps?|sftp|smtps?|imaps?|ldaps?|ssh|git|svn|nats|kafka|mqtts?|wss?)://(?P<user>[^\s:/@"'<>]{1,64}):(?P<secret>[^\s@/"'<>]{1,128})@[A-Za-z0-9.-]+"#,
        )
    },
    Spec {
        keywords: &["bearer"],
        entropy: Some(3.5),
        tier: Tier::Broad,
        positives: &[
            "curl -H \"Authorization: Bearer BPhg3n6WDfahQ-SEsVlmbV-RYz9Y0tLFlzrU6COt\" https://api.acme.dev/v2/orders",
            "> authorization: bearer niFrgPcua1InISiwzTAh8JYzrD88aL9K",
        ],
        negatives: &[
            "curl -H \"Authorization: Bearer $API_TOKEN\" https://api.acme.dev",
            "Authorization: Bearer <token>",
        ],
        ..Spec::new(
            "http-bearer-token",
            "HTTP Authorization bearer token",
            r"(?i:\bauthorization\s*:\s*bearer\s+)(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)",
        )
    },
    Spec {
        keywords: &["authorization"],
        entropy: None,
        check: Check::BasicAuth,
        tier: Tier::Broad,
        positives: &["Authorization: Basic ZGVwbG95OnE3V3pMOG1Ya1IycFQ5dkM="],
        negatives: &[
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            "Authorization: Basic $CREDS",
        ],
        ..Spec::new(
            "http-basic-auth",
            "HTTP Authorization basic credentials",
            r"(?i:\bauthorization\s*:\s*basic\s+)(?P<secret>[A-Za-z0-9+/]{8,}={0,2})",
        )
    },
    Spec {
        keywords: &["machine"],
        entropy: None,
        check: Check::UrlPassword,
        tier: Tier::Broad,
        positives: &["machine api.heroku.com login ops@acme.dev password s7Wk24lHbhrYThvMvpnN"],
        negatives: &["machine api.heroku.com login ops@acme.dev password changeme"],
        ..Spec::new(
            "netrc-credentials",
            ".netrc machine credentials",
            r"(?i)\bmachine\s+\S+\s+login\s+(?P<user>\S+)\s+password\s+(?P<secret>\S{6,128})",
        )
    },
];
