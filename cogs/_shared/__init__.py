"""What the cogs share: who is asking and where, moderator checks, the moderator log, usage wording.

Cogs never import each other; what two of them need lives here.
"""
