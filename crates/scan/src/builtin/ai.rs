//! AI model providers and ML platforms.

use super::Spec;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["t3blbkfj"],
        entropy: Some(4.0),
        positives: &["OPENAI_API_KEY=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"],
        negatives: &["OPENAI_API_KEY=sk-LgNcGwzoBqT3BlbkFJ8Ayb0Az9PQ"],
        ..Spec::new(
            "openai-api-key",
            "OpenAI API key (legacy user key)",
            r"\b(?P<secret>sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})\b",
        )
    },
    Spec {
        keywords: &["sk-proj-", "sk-svcacct-", "sk-admin-"],
        entropy: Some(4.0),
        positives: &[
            "OPENAI_API_KEY=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",
            r#"client = OpenAI(api_key="sk-svcacct-2Gpj6scesxMI3W_nw9FEqUU9_bIMsu4muDYtWpq4lNpfM2hrYlvQURbBywVRqTKC0-NvBuIfri5khJ7RNgNRFpbwyvAD9jwbwMp-2DLSYKYtJu3PVuIr9MNl")"#,
        ],
        negatives: &[
            "OPENAI_API_KEY=sk-proj-...",
            "OPENAI_API_KEY=sk-proj-JdG-DeZOR-uD",
        ],
        ..Spec::new(
            "openai-project-key",
            "OpenAI project, service account or admin key",
            r"\b(?P<secret>sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,250})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["sk-ant-api03-"],
        entropy: Some(4.0),
        positives: &[
            "ANTHROPIC_API_KEY=sk-ant-api03-9yzOSjWQmVctFuTesOsPUOO4JDj7S6lAev0Z5INyIbsfQCwSVIm5YNAHZVYHUVDC38l0LjMHcHyROz23aH6_IXn_TpevNAA",
        ],
        negatives: &[
            "ANTHROPIC_API_KEY=sk-ant-api03-...",
            "ANTHROPIC_API_KEY=sk-ant-api03-umLZaILB9vNHYIuZZ67DZGqfNsxXZl1JAVeNl1E5",
        ],
        ..Spec::new(
            "anthropic-api-key",
            "Anthropic API key",
            r"\b(?P<secret>sk-ant-api03-[A-Za-z0-9_-]{93}AA)(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["sk-ant-admin01-"],
        entropy: Some(4.0),
        positives: &[
            "ANTHROPIC_ADMIN_KEY=sk-ant-admin01-S1TgV-sQb29By8mYR4sqlKmwnMqt_ma3q2f7wQ4nBDXIwEVa0pw_LNiJHjvrkmxm9ccim5Cq0ompTELgeEGZjJ9BWxCIfAA",
        ],
        negatives: &["ANTHROPIC_ADMIN_KEY=sk-ant-admin01-nLv59-nV_rYSB2_if9Gr"],
        ..Spec::new(
            "anthropic-admin-key",
            "Anthropic Admin API key",
            r"\b(?P<secret>sk-ant-admin01-[A-Za-z0-9_-]{93}AA)(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["hf_"],
        entropy: Some(3.5),
        positives: &[
            "HF_TOKEN=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",
            "huggingface-cli login --token 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",
        ],
        negatives: &[
            "HF_TOKEN=hf_bOBOZfZMvLhh",
            "HF_TOKEN=hf_v0I83vmNomkSTmLs7ZHbYNmTg5PJoOgRJE9",
        ],
        ..Spec::new(
            "huggingface-token",
            "Hugging Face user access token",
            r"\b(?P<secret>hf_[A-Za-z]{34})\b",
        )
    },
    Spec {
        keywords: &["api_org_"],
        entropy: Some(3.5),
        positives: &["HF_ORG_TOKEN=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"],
        negatives: &["HF_ORG_TOKEN=api_org_NNusyJSDLy"],
        ..Spec::new(
            "huggingface-org-token",
            "Hugging Face organization API token",
            r"\b(?P<secret>api_org_[A-Za-z]{34})\b",
        )
    },
    Spec {
        keywords: &["r8_"],
        entropy: Some(3.5),
        positives: &["REPLICATE_API_TOKEN=r8_IFg6wESalF8FpRNKBu925AxzOaO2urvpZOS4s"],
        negatives: &["REPLICATE_API_TOKEN=r8_KlUsGnrQLXGL"],
        ..Spec::new(
            "replicate-api-token",
            "Replicate API token",
            r"\b(?P<secret>r8_[A-Za-z0-9]{37})\b",
        )
    },
    Spec {
        keywords: &["gsk_"],
        entropy: Some(4.0),
        positives: &["GROQ_API_KEY=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"],
        negatives: &["GROQ_API_KEY=gsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
        ..Spec::new(
            "groq-api-key",
            "Groq API key",
            r"\b(?P<secret>gsk_[A-Za-z0-9]{48,56})\b",
        )
    },
    Spec {
        keywords: &["pplx-"],
        entropy: Some(4.0),
        positives: &["PERPLEXITY_API_KEY=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"],
        negatives: &["PERPLEXITY_API_KEY=pplx-KHOODRVsOxNBZJ5ny10k"],
        ..Spec::new(
            "perplexity-api-key",
            "Perplexity API key",
            r"\b(?P<secret>pplx-[A-Za-z0-9]{48})\b",
        )
    },
    Spec {
        keywords: &["cohere", "co_api_key"],
        entropy: Some(4.0),
        positives: &[
            "COHERE_API_KEY=zFXTxB60Xp3hOEWGdYRvraj14FjcRJCVrwo6H5sl",
            "CO_API_KEY: pQWpOb6jvpMYqOSFNoVl7LaPdfOmDueONNoRplPg",
        ],
        negatives: &["COHERE_MODEL=command-r-plus-08-2024"],
        ..Spec::new(
            "cohere-api-key",
            "Cohere API key (named in context)",
            r#"(?i:(?:cohere[\w.-]{0,20}?|co[_.-]?)api[_.-]?key)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9]{40})\b"#,
        )
    },
    Spec {
        keywords: &["mistral"],
        entropy: Some(4.0),
        positives: &["MISTRAL_API_KEY=qBB6KATB43ny10A1V7wUmcP4Za3loHYG"],
        negatives: &["MISTRAL_MODEL=mistral-large-latest"],
        ..Spec::new(
            "mistral-api-key",
            "Mistral AI API key (named in context)",
            r#"(?i:mistral[\w.-]{0,20}?(?:key|token))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9]{32})\b"#,
        )
    },
    Spec {
        keywords: &["xai-"],
        entropy: Some(4.0),
        positives: &[
            "XAI_API_KEY=xai-kZT5QculQbUccTXY2BECIWWR6oOhq0yC8xWwzJYlYHeMEjgWCKurdGKfSD8hMwSzMxPzFXULaSbSR738",
        ],
        negatives: &["XAI_API_KEY=xai-SMFvCimkUNdfvfVfFWvE"],
        ..Spec::new(
            "xai-api-key",
            "xAI API key",
            r"\b(?P<secret>xai-[A-Za-z0-9]{80})\b",
        )
    },
    Spec {
        keywords: &["deepseek"],
        positives: &["DEEPSEEK_API_KEY=sk-83df7c507de492846de7317eaf09fa0d"],
        negatives: &["DEEPSEEK_BASE_URL=https://api.deepseek.com"],
        ..Spec::new(
            "deepseek-api-key",
            "DeepSeek API key (named in context)",
            r#"(?i:deepseek[\w.-]{0,20}?(?:key|token))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>sk-[a-f0-9]{32})\b"#,
        )
    },
    Spec {
        keywords: &["sk-or-v1-"],
        positives: &[
            "OPENROUTER_API_KEY=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",
        ],
        negatives: &["OPENROUTER_API_KEY=sk-or-v1-38e2c85fdea6c1e09960"],
        ..Spec::new(
            "openrouter-api-key",
            "OpenRouter API key",
            r"\b(?P<secret>sk-or-v1-[a-f0-9]{64})\b",
        )
    },
    Spec {
        keywords: &["lsv2_"],
        positives: &["LANGSMITH_API_KEY=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"],
        negatives: &["LANGSMITH_API_KEY=lsv2_pt_<key>"],
        ..Spec::new(
            "langsmith-api-key",
            "LangSmith API key",
            r"\b(?P<secret>lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b",
        )
    },
    Spec {
        keywords: &["elevenlabs", "xi-api-key", "xi_api_key"],
        positives: &[
            "ELEVENLABS_API_KEY=sk_52a394478ef518ee81a3733556679d1411b95f52ec28bb9a",
            "xi-api-key: 8ed205084eae3ce24873abc4dc729a1d",
        ],
        negatives: &["ELEVENLABS_VOICE_ID=KeGabWsEcjfC7v7yNkSX"],
        ..Spec::new(
            "elevenlabs-api-key",
            "ElevenLabs API key (named in context)",
            r#"(?i:(?:elevenlabs[\w.-]{0,20}?(?:key|token)|xi[_-]api[_-]key))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>(?:sk_)?[a-f0-9]{32,48})\b"#,
        )
    },
    Spec {
        keywords: &["wandb"],
        positives: &["WANDB_API_KEY=5a77ee57c8d0d3a4ed1dae72374f0e4729df41f0"],
        negatives: &["WANDB_PROJECT=churn-model-v2"],
        ..Spec::new(
            "wandb-api-key",
            "Weights & Biases API key (named in context)",
            r#"(?i:wandb[\w.-]{0,20}?(?:key|token))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[a-f0-9]{40})\b"#,
        )
    },
];
