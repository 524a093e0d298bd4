//! Payment providers and commerce platforms.

use super::Spec;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["sk_live_"],
        entropy: Some(3.5),
        positives: &[
            "STRIPE_SECRET_KEY=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",
            "stripe.api_key = \"sk_live_PiEBzLjw1oOY7VVAug3GVSs9\"",
        ],
        negatives: &[
            "STRIPE_SECRET_KEY=sk_live_000000000000000000000000",
            "sk_live_2pPX36aA",
        ],
        ..Spec::new(
            "stripe-secret-key",
            "Stripe live secret key",
            r"\b(?P<secret>sk_live_[0-9A-Za-z]{24,99})\b",
        )
    },
    Spec {
        keywords: &["rk_live_"],
        entropy: Some(3.5),
        positives: &[
            "STRIPE_RESTRICTED_KEY=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",
        ],
        negatives: &["STRIPE_RESTRICTED_KEY=rk_live_<key>"],
        ..Spec::new(
            "stripe-restricted-key",
            "Stripe live restricted key",
            r"\b(?P<secret>rk_live_[0-9A-Za-z]{24,99})\b",
        )
    },
    Spec {
        keywords: &["sk_test_", "rk_test_"],
        entropy: Some(3.5),
        positives: &[
            "STRIPE_SECRET_KEY=sk_test_q37oOLyTBTQPwpdsFRd6YB7kR6V76r5e2QauVshVKmVBVD1SvocEcxVxvgqy8pqKWV8PX4fnmYaDP9NCaeyTeeD21dIMVyZ8sRH",
        ],
        negatives: &["Stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'"],
        ..Spec::new(
            "stripe-test-secret-key",
            "Stripe test-mode secret or restricted key",
            r"\b(?P<secret>[sr]k_test_[0-9A-Za-z]{24,99})\b",
        )
    },
    Spec {
        keywords: &["whsec_"],
        entropy: Some(3.5),
        positives: &["STRIPE_WEBHOOK_SECRET=whsec_RLYodIVrkioRQp0A4NHDQso5Jrg8jP9S"],
        negatives: &["STRIPE_WEBHOOK_SECRET=whsec_..."],
        ..Spec::new(
            "stripe-webhook-secret",
            "Stripe webhook signing secret",
            r"\b(?P<secret>whsec_[A-Za-z0-9+/=]{32,})(?:[^\w+/=]|$)",
        )
    },
    Spec {
        keywords: &["eaaa", "sq0atp-"],
        entropy: Some(3.5),
        positives: &[
            "SQUARE_ACCESS_TOKEN=EAAAZwmoc8C-NB7VRChb1eKewVRZmVkaegqD9GFbtwClyFdfQwv4BXa27XqnoMsH",
            "square_token: sq0atp-q5iEaIKYd6A6KYf6J_9Stm",
        ],
        negatives: &["SQUARE_ACCESS_TOKEN=EAAA7U9nkXGkIVdd5T8vkLvT"],
        ..Spec::new(
            "square-access-token",
            "Square access token",
            r"\b(?P<secret>EAAA[A-Za-z0-9_-]{60}|sq0atp-[A-Za-z0-9_-]{22})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["sq0csp-"],
        positives: &["SQUARE_APP_SECRET=sq0csp-3n68N9Ea6XA8ya4_jpRtyQcBrw_nbV3ARcG17SDidvS"],
        negatives: &["SQUARE_APP_SECRET=sq0csp-drv541i7fo"],
        ..Spec::new(
            "square-oauth-secret",
            "Square OAuth application secret",
            r"\b(?P<secret>sq0csp-[A-Za-z0-9_-]{43})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["access_token$"],
        positives: &[
            "BRAINTREE_ACCESS_TOKEN=access_token$production$2yr0d3iq4rjedl3a$d4ddce2a0d7d28941eb3e96ffbcdd8c8",
        ],
        negatives: &["BRAINTREE_ACCESS_TOKEN=access_token$production$<merchant>$<key>"],
        ..Spec::new(
            "braintree-access-token",
            "PayPal Braintree access token",
            r"\b(?P<secret>access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32})\b",
        )
    },
    Spec {
        keywords: &["paypal"],
        entropy: Some(4.0),
        positives: &[
            "PAYPAL_CLIENT_SECRET=EHU3SmJ3NOLfs2AYlK-hztbpX2ql7fh8x_8yU9opk0_b26cKmb_x8_zSm5Jhu1gUorSICxgwH-3j1jpZ",
        ],
        negatives: &[
            "PAYPAL_CLIENT_ID=AKmzzYiiNJfk2cHt4M94aYNAr2xEHcDOyg1UPnvpNHETMamWn_c6i1uI9Xjfw1uXRPD9BwOD5aq8DR5H",
        ],
        ..Spec::new(
            "paypal-client-secret",
            "PayPal REST client secret (named in context)",
            r#"(?i:paypal[\w.-]{0,20}?secret)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>E[A-Za-z0-9_-]{79})(?:[^\w-]|$)"#,
        )
    },
    Spec {
        keywords: &["shpat_"],
        positives: &["SHOPIFY_ACCESS_TOKEN=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"],
        negatives: &["SHOPIFY_ACCESS_TOKEN=shpat_9819ff530b6eeb3c"],
        ..Spec::new(
            "shopify-access-token",
            "Shopify Admin API access token",
            r"\b(?P<secret>shpat_[a-fA-F0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["shpca_"],
        positives: &["X-Shopify-Access-Token: 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"],
        negatives: &["X-Shopify-Access-Token: shpca_<token>"],
        ..Spec::new(
            "shopify-custom-app-token",
            "Shopify custom app access token",
            r"\b(?P<secret>shpca_[a-fA-F0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["shppa_"],
        positives: &["SHOPIFY_PASSWORD=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"],
        negatives: &["SHOPIFY_PASSWORD=shppa_97c128021d89fec81af0548696e931a"],
        ..Spec::new(
            "shopify-private-app-token",
            "Shopify private app password",
            r"\b(?P<secret>shppa_[a-fA-F0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["shpss_"],
        positives: &["SHOPIFY_API_SECRET=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"],
        negatives: &["SHOPIFY_API_SECRET=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8"],
        ..Spec::new(
            "shopify-shared-secret",
            "Shopify app shared secret",
            r"\b(?P<secret>shpss_[a-fA-F0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["flwseck"],
        positives: &["FLW_SECRET_KEY=FLWSECK-d40gec44gh0897efe20618hg311hc704-X"],
        negatives: &["FLW_SECRET_KEY=FLWSECK-<secret>-X"],
        ..Spec::new(
            "flutterwave-secret-key",
            "Flutterwave secret key",
            r"\b(?P<secret>FLWSECK(?:_TEST)?-[a-h0-9]{32}-X)(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &[
            "access-sandbox-",
            "access-development-",
            "access-production-",
        ],
        positives: &["PLAID_ACCESS_TOKEN=access-production-1ca8dcba-96a9-489a-a322-5572dcdc9ff9"],
        negatives: &["PLAID_ACCESS_TOKEN=access-production-<item>"],
        ..Spec::new(
            "plaid-access-token",
            "Plaid access token",
            r"\b(?P<secret>access-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        )
    },
    Spec {
        keywords: &["gocardless"],
        entropy: Some(3.5),
        positives: &["GOCARDLESS_ACCESS_TOKEN=live_Zy5hvO-gq_lhRPXiKtIIqfnrahcnagWQMUOzMB9n"],
        negatives: &["GOCARDLESS_ENVIRONMENT=live"],
        ..Spec::new(
            "gocardless-api-token",
            "GoCardless live access token (named in context)",
            r#"(?i:gocardless[\w.-]{0,20}?(?:token|key))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>live_[A-Za-z0-9_=-]{40})(?:[^\w=-]|$)"#,
        )
    },
];
