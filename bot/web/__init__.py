"""The web gallery: each server's delivered results on the web, for its members, signed in with Discord.

``server`` is the aiohttp application (WEB_PORT), ``oauth`` Discord's sign-in, ``sessions`` the cookies,
``views`` what a page shows of a result; ``templates/`` and ``static/`` are its pages, style and script.
"""
