"""Helpers that lay out fake MER corpora as their owners distribute them (annotation sheets),
and read back what a builder wrote."""

import pathlib

import openpyxl

SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
               "Duration", "Type", "Action Units", "Notes", "Estimated Emotion"]


def write_sheet(path: pathlib.Path, header, rows, notes=()):
  book = openpyxl.Workbook()
  for line in notes:
    book.active.append(line)
  book.active.append(header)
  for row in rows:
    book.active.append(row)
  book.save(path)


def records(b) -> dict[str, dict]:
  source = b.as_data_source()["train"]
  out = {}
  for i in range(len(source)):
    r = source[i]
    r = {k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
    out[r["clip_id"]] = r
  return out
