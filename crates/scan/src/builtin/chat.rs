//! Chat platforms, bots and webhooks.

use super::Spec;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["xoxb-"],
        positives: &["SLACK_BOT_TOKEN=xoxb-730504753216-5079835353363-rYuXcjVb4J6ZMbA6XLX1ZQWa"],
        negatives: &["SLACK_BOT_TOKEN=xoxb-<your-bot-token>", "xoxb-3635"],
        ..Spec::new(
            "slack-bot-token",
            "Slack bot token",
            r"\b(?P<secret>xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24,34})\b",
        )
    },
    Spec {
        keywords: &["xoxp-"],
        positives: &[
            "SLACK_USER_TOKEN=xoxp-797933581793-529405795216-3440507589644-423f2469d7685019c3791ee27889e3ed",
        ],
        negatives: &["SLACK_USER_TOKEN=xoxp-473062779737"],
        ..Spec::new(
            "slack-user-token",
            "Slack user token",
            r"\b(?P<secret>xoxp-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["xoxa-", "xoxr-"],
        entropy: Some(3.5),
        positives: &["token: xoxa-2-PjQ1QavtxPKm5IQ03BpCjzvsiPWlfqYfODSFeJ8LPXcFnzGPUFJHp9WnCRq0"],
        negatives: &["token: xoxa-2-abc"],
        ..Spec::new(
            "slack-workspace-token",
            "Slack workspace access or refresh token",
            r"\b(?P<secret>xox[ar]-(?:\d-)?[0-9A-Za-z-]{20,120})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["xapp-"],
        positives: &[
            "SLACK_APP_TOKEN=xapp-1-AWNAW7L8L7Q-0178169200966-4ee87d1de7b7288f3bdf5b440ca8c4a57b6c5573460783366acd8bc7a6ef7ec7",
        ],
        negatives: &["SLACK_APP_TOKEN=xapp-1-<app-token>"],
        ..Spec::new(
            "slack-app-token",
            "Slack app-level token",
            r"\b(?P<secret>xapp-\d-[A-Z0-9]{9,12}-\d{10,16}-[a-f0-9]{64})\b",
        )
    },
    Spec {
        keywords: &["xoxe.xoxb-", "xoxe.xoxp-"],
        entropy: Some(4.0),
        positives: &[
            "config_token: xoxe.xoxp-1-IDKmS6MNiKspYz8JiRZeKYck90mzt7BrlKGS9bgMUM0ULIP2W5vSaWrgK5jgWjYhshJfIM5zfY4TRifqb1KMWAe06DkCxIoiwOndfJFT9Ui1De92OLzRtmZpgasQShq9IuAYYyqaSiCE4Qszrtv8DwvA4mlPxjrtvsJC",
        ],
        negatives: &["config_token: xoxe.xoxp-1-wrzkGmZJLcls0wTfqkpJ"],
        ..Spec::new(
            "slack-config-token",
            "Slack app configuration access token",
            r"\b(?P<secret>xoxe\.xox[bp]-\d-[A-Za-z0-9]{160,170})\b",
        )
    },
    Spec {
        keywords: &["xoxe-"],
        entropy: Some(4.0),
        positives: &[
            "refresh: xoxe-1-63lG911tR43vpR5KqdWDnU9PKzyjGI9Bpqa6eNmkJhzUsUjCwuGSBZFUryua720m6VSRoEHvwWwuCOHPmbEPgHfP1Cr7M9onEa57ZSy7S63jz3tgMEWqGL0DYtfkHImrahs5f9QBF0Kr3VFoGm",
        ],
        negatives: &["refresh: xoxe-1-zVdGcovMDu3o8C2MZhKg4ckpmmIA7G"],
        ..Spec::new(
            "slack-config-refresh-token",
            "Slack app configuration refresh token",
            r"\b(?P<secret>xoxe-\d-[A-Za-z0-9]{140,150})\b",
        )
    },
    Spec {
        keywords: &["hooks.slack.com"],
        entropy: Some(3.5),
        positives: &[
            "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/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",
            "curl -X POST https://hooks.slack.com/workflows/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",
        ],
        negatives: &["see https://hooks.slack.com/services/ for setup"],
        ..Spec::new(
            "slack-webhook-url",
            "Slack incoming webhook URL",
            r"(?P<secret>https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,12}/[A-Z0-9]{6,12}/[A-Za-z0-9/]{16,60})",
        )
    },
    Spec {
        keywords: &["webhook.office.com"],
        entropy: Some(3.5),
        positives: &[
            "TEAMS_WEBHOOK=https://acme.webhook.office.com/webhookb2/e264823e-db81-4559-a0fb-50b2ae386bb4@3369ea5b-b80f-4455-a0dc-8c945fd7e19d/IncomingWebhook/19c17e3bcc26b96a1a4b5cf581189b82/49621813-319f-4081-a695-7c2799121318",
        ],
        negatives: &["TEAMS_WEBHOOK=https://acme.webhook.office.com/webhookb2/<id>"],
        ..Spec::new(
            "microsoft-teams-webhook",
            "Microsoft Teams incoming webhook URL",
            r"(?P<secret>https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[0-9a-f-]{36}@[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36}(?:/[A-Za-z0-9_-]+)?)",
        )
    },
    Spec {
        keywords: &["discord.com/api/webhooks", "discordapp.com/api/webhooks"],
        entropy: Some(3.5),
        positives: &[
            "DISCORD_WEBHOOK=https://discord.com/api/webhooks/9001427705307653267/7ZedaQN-8Nn0gwFeNamXc4MxyF7DKcqF1c1wsh1SDguqvqzz9Jtg-MIbQkmttJVfqif9",
        ],
        negatives: &["DISCORD_WEBHOOK=https://discord.com/api/webhooks/{id}/{token}"],
        ..Spec::new(
            "discord-webhook-url",
            "Discord webhook URL",
            r"(?P<secret>https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,68})",
        )
    },
    Spec {
        keywords: &["discord"],
        entropy: Some(4.0),
        positives: &[
            "DISCORD_BOT_TOKEN=M0AmNDY3WXNM5kXr4awSF0RqMi.mm8Ym3.zbGR2JmAzk98k6nhGUZXPD5ZnUztHC86wzpouF",
        ],
        negatives: &[
            "DISCORD_BOT_TOKEN=MxFXOzjOGP1WRO4T41292qYmnT",
            "# discord bot setup",
        ],
        ..Spec::new(
            "discord-bot-token",
            "Discord bot token (Discord named on the line)",
            r"(?P<secret>\b[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40})(?:[^\w.-]|$)",
        )
    },
    Spec {
        keywords: &[":aa"],
        entropy: Some(3.5),
        positives: &["TELEGRAM_BOT_TOKEN=3204728053:AAKIUxLeqvrCh0iKWhgvv5Na8tQI-SBSOu0"],
        negatives: &["TELEGRAM_BOT_TOKEN=0407798089:AA<token>"],
        ..Spec::new(
            "telegram-bot-token",
            "Telegram bot API token",
            r"\b(?P<secret>\d{8,10}:AA[A-Za-z0-9_-]{33})(?:[^\w-]|$)",
        )
    },
];
