"""The prompt filter: evasions caught, innocent words passed, and which list applies where."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.jobs.recipe import Recipe
from bot.policy.content_filter import (
    builtin_nsfw_terms,
    check_prompt,
    is_effectively_empty,
    normalise_prompt,
    normalise_term,
)
from db import Store


@pytest.mark.parametrize(
    ("prompt", "term"),
    [
        ("nude", "nude"),
        ("NUDE", "nude"),
        ("nud3", "nude"),
        ("p0rn", "porn"),
        ("n.u.d.e", "nude"),
        ("n-u-d-e", "nude"),
        ("n_u_d_e", "nude"),
        ("n*u*d*e", "nude"),
        ("a n u d e woman", "nude"),
        ("b e a c h n u d e", "nude"),  # spaced letters joined from the middle of a run
        ("nuuude", "nude"),
        ("nud\u0435", "nude"),  # Cyrillic е
        ("ｎｕｄｅ", "nude"),  # full-width
        ("nu\u200bde", "nude"),  # zero-width space
        ("nu\u00adde", "nude"),  # soft hyphen
        ("náked", "naked"),
        ("hentai girl", "hentai"),
        ("sexy", "sexy"),
        ("$ex on the beach", "sex"),
        ("a nude!", "nude"),
        ("h3nt41", "hentai"),
        ("a portrait, n. u. d. e., oil on canvas", "nude"),
        ("nude-art photography", "nude"),
        ("a woman with NO   CLOTHES", "no clothes"),
        ("𝐧𝐮𝐝𝐞 statue", "nude"),
        ("pørn", "porn"),  # ø does not decompose under NFD; it is folded as a look-alike
        ("\u0455\u0435\u0445", "sex"),  # all Cyrillic
        ("BDS\u039c", "bdsm"),  # Greek capital Mu: its lower case μ passes for u, the capital for M
        ("\u0397ENTAI", "hentai"),  # Greek capital Eta is H (its lower case η passes for n)
        ("\u03f2ameltoe", "cameltoe"),  # lunate sigma, which NFKC would make σ
        ("s1ut", "slut"),  # leetspeak writes l as 1 too
        ("4n41", "anal"),
        ("bo0b$!", "boobs"),  # a trailing $ that is a letter, then punctuation
        ("n ! p p l e", "nipple"),  # a leet symbol among spaced letters
        ("h e n t a !!", "hentai"),  # the first "!" is a letter, the second punctuation
        ("n\u057dde", "nude"),  # Armenian seh, a look-alike of u in Unicode's confusables data
        ("p\u0585rn", "porn"),  # Armenian oh
        ("\u054fEXY", "sexy"),  # Armenian capital tiwn, which passes for S though its lower case does not
        ("\u13bbENTAI", "hentai"),  # Cherokee mi
        ("\u2c8eENTAI", "hentai"),  # Coptic capital hate, whose lower case looks like nothing Latin
        ("\u017fex", "sex"),  # long s, which NFKC makes s
        ("only\u017fans", "onlyfans"),  # and which looks like f
        ("p\u0966rn", "porn"),  # a Devanagari zero among letters reads as o, like a 0 does
        ("\u00d7\u00d7\u00d7", "xxx"),  # multiplication signs
    ],
)
def test_evasions_are_caught(prompt: str, term: str) -> None:
    verdict = check_prompt(prompt, [], nsfw_allowed=False)
    assert verdict.blocked, normalise_prompt(prompt)
    assert (verdict.term, verdict.source) == (term, "builtin")
    assert verdict.rule is not None and f"`{term}`" in verdict.rule and "built-in NSFW list" in verdict.rule


@pytest.mark.parametrize(
    "prompt",
    [
        "sussex countryside",
        "data analysis",
        "essex",
        "a b c blocks",
        "i am a cat",
        "a moon over the sea",
        "scunthorpe",
        "assassin",
        "cockpit of a plane",
        "the middlesex hospital",
        "magna cum laude diploma",
        "a pen is on the table",
        "x-ray of a hand",
        "4k 3d render, 1920s",
        "cooool sunglasses",
        "🌊🌅",
        "a lily in the hall, still life",
        "nail polish on a little island",
        "\u0397\u03bb\u03b9\u03bf\u03c2 over the sea",  # Greek Helios
        "\u0441\u0435\u043a\u0441",  # Russian, which reads as cekc, not as sex
        "room 1011, 4 7 3",
        "wow ! ! !",
        # Other scripts read as themselves: only look-alikes of Latin letters are read as Latin.
        "\u685c\u306e\u6728\u306e\u4e0b\u3067\u7720\u308b\u732b",  # Japanese: a cat asleep under a cherry tree
        "\u6708\u5149\u4e0b\u7684\u4e00\u53ea\u732b",  # Chinese: a cat in the moonlight
        "\ubc14\ub2e4 \uc704\uc758 \ub4f1\ub300",  # Korean: a lighthouse over the sea
        "\u043b\u0435\u0441 \u0443 \u0440\u0435\u043a\u0438 \u043d\u0430 \u0437\u0430\u043a\u0430\u0442\u0435",  # Russian: a forest by a river at sunset
        "\u0540\u0561\u0575\u0561\u057d\u057f\u0561\u0576\u056b \u057d\u0561\u0580\u0565\u0580\u0568",  # Armenian: the mountains of Armenia
        "\u03c3\u03bf\u03c6\u03af\u03b1 \u03ba\u03b1\u03b9 \u039f\u03a5\u03a1\u0391\u039d\u039f\u03a3",  # Greek: wisdom and SKY
        "\u0633\u0627\u0644 \u06f1\u06f5\u06f1\u06f1",  # Persian: the year 1511, whose digits look like l, o, l, l
        "\u0968\u0966\u0968\u0967 \u0915\u0940 \u0926\u093f\u0935\u093e\u0932\u0940",  # Hindi: the Diwali of 2021
        "\u0e1b\u0e35 \u0e52\u0e55\u0e56\u0e50",  # Thai: the year 2560
        "1920\u00d71080 wallpaper",
    ],
)
def test_innocent_prompts_pass(prompt: str) -> None:
    assert check_prompt(prompt, [], nsfw_allowed=False).blocked is False


def test_thousands_of_spaced_letters_are_read_quickly() -> None:
    """Joins of spaced letters once cost a cube of the prompt's length: 94 s for 3,000 letters."""
    started = time.perf_counter()
    for prompt in ("a " * 3000, "n u d " * 1000, "a n " * 1500, "! a " * 1500):
        check_prompt(prompt, ["anananananananananananananananananananananananananananananananan"], nsfw_allowed=False)
    # Now about 0.04 s; the limit only has to tell that from the old 94 s on a busy CI machine.
    assert time.perf_counter() - started < 30
    assert check_prompt("a " * 2000 + "n u u u u d e", [], nsfw_allowed=False).term == "nude"


def test_builtin_terms_pass_where_nsfw_is_allowed() -> None:
    assert check_prompt("a nude figure study", [], nsfw_allowed=True).blocked is False
    assert check_prompt("hentai", [], nsfw_allowed=True).blocked is False


def test_guild_terms_block_everywhere_even_where_nsfw_is_allowed() -> None:
    verdict = check_prompt("a sad CL0WN at a party", ["clown"], nsfw_allowed=True)

    assert (verdict.blocked, verdict.term, verdict.source) == (True, "clown", "guild")
    assert verdict.rule == "`clown` is on this server's filter list, which applies in every channel."


def test_guild_phrases_match_as_whole_phrases() -> None:
    assert check_prompt("bare feet on sand", ["bare feet"], nsfw_allowed=True).term == "bare feet"
    assert check_prompt("bare-feet", ["bare feet"], nsfw_allowed=True).blocked
    assert not check_prompt("bare hands and feet", ["bare feet"], nsfw_allowed=True).blocked
    assert not check_prompt("barefeet", ["bare feet"], nsfw_allowed=True).blocked


def test_guild_term_wins_over_builtin_when_both_match() -> None:
    verdict = check_prompt("nude clown", ["clown"], nsfw_allowed=False)
    assert verdict.source == "guild"


def test_repeated_letters_need_at_least_the_terms_count() -> None:
    assert check_prompt("moooon", ["moon"], nsfw_allowed=True).term == "moon"
    assert not check_prompt("mon", ["moon"], nsfw_allowed=True).blocked
    assert not check_prompt("as", ["ass"], nsfw_allowed=True).blocked
    assert check_prompt("xxxx", [], nsfw_allowed=False).term == "xxx"
    assert not check_prompt("xx", [], nsfw_allowed=False).blocked


def test_negative_prompt_is_not_an_input() -> None:
    """The caller passes only the positive prompt; there is no way to hand the filter a negative one."""
    with pytest.raises(TypeError):
        check_prompt("a lighthouse", [], nsfw_allowed=False, negative_prompt="nude, nsfw")  # type: ignore[call-arg]
    assert not check_prompt("a lighthouse", [], nsfw_allowed=False).blocked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  A   Lighthouse\tin a STORM ", "a lighthouse in a storm"),
        ("a n u d e woman", "a nude woman"),
        ("a b c blocks", "a b c blocks"),
        ("i am a cat", "i am a cat"),
        ("nuuude", "nuude"),
        ("moon", "moon"),
        ("Crème Brûlée", "creme brulee"),
        ("n.u.d.3", "nude"),
        ("1920", "1920"),
    ],
)
def test_normalise_prompt(text: str, expected: str) -> None:
    assert normalise_prompt(text) == expected


@pytest.mark.parametrize("prompt", ["", "   ", "\u200b\u200d\ufeff", "... !!! ---", "\u0301\u0301"])
def test_prompts_that_normalise_to_nothing_are_empty(prompt: str) -> None:
    assert is_effectively_empty(prompt)


@pytest.mark.parametrize("prompt", ["a", "🌊", "42", "лес"])
def test_short_prompts_are_not_empty(prompt: str) -> None:
    assert not is_effectively_empty(prompt)


def test_normalise_term() -> None:
    assert normalise_term("  N.U.D.E ") == "nude"
    assert normalise_term("Bare-Feet") == "bare feet"
    assert normalise_term("xxx") == "xxx"  # a term's repeated letters are kept: they are its minimum


@pytest.mark.parametrize(
    ("term", "message"),
    [("", "at least one letter"), ("  -- ", "at least one letter"), ("x" * 65, "at most 64 characters")],
)
def test_bad_terms_are_refused_with_one_sentence(term: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        normalise_term(term)
    assert str(caught.value).count(".") == 1 and str(caught.value).endswith(".")


def test_builtin_list_has_the_required_terms_and_their_forms() -> None:
    terms = builtin_nsfw_terms()
    assert {"nude", "naked", "nsfw", "porn", "sex", "hentai"} <= terms
    assert {"nudes", "nudity", "porno", "pornographic", "sexy", "sexual"} <= terms
    assert all(term == normalise_term(term) for term in terms)
    # Nothing in the list may catch the innocent words the issue names.
    assert not {"sussex", "essex", "analysis", "assassin", "scunthorpe", "ass", "cock"} & terms


async def test_a_term_stored_through_the_store_blocks_prompts(tmp_path: Path) -> None:
    """The way moderators use it: normalise, store, read back, check."""
    store = await Store.open(tmp_path / "bot.sqlite3", recipe=Recipe)
    try:
        await store.add_filter_term(10, normalise_term(" Sp1der "), actor_id=7)
        terms = await store.filter_terms(10)
    finally:
        await store.close()

    assert terms == ["spider"]
    assert check_prompt("a giant S P I D E R", terms, nsfw_allowed=True).term == "spider"
    assert not check_prompt("spiderman", terms, nsfw_allowed=True).blocked


@pytest.mark.parametrize("prompt", ["a l0li drawing", "lolicon art", "j.a.i.l.b.a.i.t"])
def test_sexualised_minors_are_blocked_even_where_nsfw_is_allowed(prompt: str) -> None:
    verdict = check_prompt(prompt, [], nsfw_allowed=True)
    assert verdict.blocked and verdict.source == "always"
    assert "blocked everywhere" in (verdict.rule or "")


def test_the_always_blocked_list_leaves_innocent_words_alone() -> None:
    assert not check_prompt("a lollipop and a loyal dog", [], nsfw_allowed=True).blocked
