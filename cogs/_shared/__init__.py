"""What the cogs share: who is asking and where (origin), moderator checks and the moderator log
(moderators), usage wording (usage_text), ephemeral replies (replies), a channel by its id (channels).

Cogs never import each other; what two of them need lives here.
"""
