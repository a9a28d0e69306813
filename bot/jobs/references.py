"""The images that guide a job: how a recipe names them, how a member names one, and how they are told.

A recipe's ``reference_images`` are, in the order the model reads them, either a kept picture
(``images_dir/sources/<sha256>.png``: one a member gave, or one of a moodboard's) or an image of a
finished job, ``job:<id>:<n>`` with ``n`` from 1, as a member names it in a prompt with
``--ref <id>:<n>``. A job's image is read from that job's files when the job is queued (again
after a restart), so it is not copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from bot.errors import InvalidRequest
from bot.jobs.messages import quote_excerpt
from bot.jobs.recipe import JOB_IMAGE_PREFIX, JobKind, Recipe

#: ``--ref 12:1``, or several: ``--ref 12:1 9:2`` (or with commas).
_JOB_IMAGE = re.compile(r"([0-9]{1,18}):([0-9]{1,2})")
#: /imagine's reference, reference2 and reference3; a moodboard adds its own to them.
MAX_GIVEN_REFERENCES: Final = 3


@dataclass(frozen=True, slots=True)
class JobImage:
    """Image ``n`` (from 1) of job ``job_id``, as a reference names it."""

    job_id: int
    n: int

    @property
    def entry(self) -> str:
        return f"{JOB_IMAGE_PREFIX}{self.job_id}:{self.n}"

    def __str__(self) -> str:
        return f"job {self.job_id} image {self.n}"


def job_image(entry: str) -> JobImage | None:
    """The job's image a recipe's entry names; ``None`` for a kept picture."""
    if not entry.startswith(JOB_IMAGE_PREFIX):
        return None
    job_id, _, n = entry.removeprefix(JOB_IMAGE_PREFIX).partition(":")
    return JobImage(int(job_id), int(n))


def parse_job_images(text: str) -> tuple[JobImage, ...]:
    """What ``--ref`` names: images of jobs posted here, as ``<job>:<image>``; a sentence for anything else."""
    words = [word for word in re.split(r"[\s,]+", text.strip()) if word]
    found = []
    for word in words:
        match = _JOB_IMAGE.fullmatch(word)
        if match is None or int(match[2]) < 1 or int(match[1]) < 1:
            raise InvalidRequest(
                f"--ref names an image already posted as job:image, such as --ref 12:1, not {quote_excerpt(word)}."
            )
        found.append(JobImage(int(match[1]), int(match[2])))
    if not found:
        raise InvalidRequest("--ref names an image already posted as job:image, such as --ref 12:1.")
    return tuple(dict.fromkeys(found))  # the same image named twice guides once


def describe_references(recipe: Recipe) -> str:
    """The references in words, for an image's parameters: "job 9 image 2, 2 pictures, moodboard neon"."""
    jobs = [str(image) for entry in recipe.reference_images if (image := job_image(entry)) is not None]
    pictures = len(recipe.reference_images) - len(jobs)
    parts = list(jobs)
    if pictures:
        parts.append("a picture" if pictures == 1 else f"{pictures} pictures")
    if recipe.mood is not None:
        parts.append(f"moodboard {recipe.mood}")
    return ", ".join(parts)


def describe_edit(recipe: Recipe) -> str:
    """An edit by instruction in words: 'Edit: "make it night" of job 12, image 1; references: job 9 image 2'."""
    if recipe.kind != JobKind.EDIT:
        raise ValueError(f"a {recipe.kind} job is not an edit by instruction")
    if recipe.parent_job_id is not None and recipe.parent_image is not None:
        of = f"job {recipe.parent_job_id}, image {recipe.parent_image + 1}"
    else:
        of = "a picture"
    text = f'Edit: "{recipe.prompt}" of {of}'
    if recipe.reference_images:
        text += f"; references: {describe_references(recipe)}"
    return text
