"""Annotation sheets and file layouts of the MER corpora as their owners distribute them.

Column names are matched loosely ("Onset Frame", "onset_frame", "OnsetFrame"), the header row
is searched for (SAMM's comes after rows of notes), and files and folders are found by
patterns a level or two down, since copies of one corpus differ in their layout.
"""

import dataclasses
import pathlib
import re

import openpyxl

from deft_jax.data.corpus_errors import ManualDirError, Skip


def normalise(header) -> str:
  """Column names compared loosely: "Onset Frame", "onset_frame" and "OnsetFrame" agree."""
  return re.sub(r"[^a-z0-9]", "", str(header or "").lower())


@dataclasses.dataclass(frozen=True)
class Row:
  """One data row of an annotation sheet, its cells keyed by field."""
  file: str
  number: int  # as the spreadsheet numbers it (1-based)
  cells: dict
  headers: dict  # field -> the column header as written

  @property
  def where(self) -> str:
    return f"{self.file} row {self.number}"

  def text(self, field: str) -> str:
    value = self.cells.get(field)
    if isinstance(value, float) and value.is_integer():
      value = int(value)  # Excel stores 12 as 12.0
    return "" if value is None else str(value).strip()

  def frame(self, field: str) -> int | None:
    """A frame number; None where the cell says unknown ("/", -1, empty)."""
    text = self.text(field)
    if text in ("", "/", "-", "-1", "?"):
      return None
    try:
      number = float(text)
    except ValueError:
      number = None
    if number is None or not number.is_integer() or number < 0:
      raise Skip(f"field {self.headers[field]!r}: {text!r} is not a frame number")
    return int(number)


def read_sheet(path: pathlib.Path, columns: dict[str, tuple[str, ...]], search_rows: int = 30):
  """Yields the data rows of the first worksheet with a header naming every field.

  columns maps each field to the normalised header names it may have, best first. The header
  may sit below rows of notes (SAMM); it is the first row, among the first `search_rows`,
  that names them all. Fully empty rows are not data and are passed over.
  """
  try:
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
  except Exception as e:  # openpyxl raises many kinds for a damaged file
    raise ManualDirError(f"{path}: cannot read the workbook ({type(e).__name__}: {e})") from e
  best = (0, None, None)
  try:
    for sheet in book.worksheets:
      rows = sheet.iter_rows(min_row=1, values_only=True)
      for number, values in enumerate(rows, start=1):
        if number > search_rows:
          break
        found = _match_header(values, columns)
        if len(found) == len(columns):
          yield from _data_rows(path.name, number, rows, found, values)
          return
        if len(found) > best[0]:
          best = (len(found), f"{sheet.title!r} row {number}", found)
  finally:
    book.close()
  missing = sorted(set(columns) - set(best[2] or {}))
  raise ManualDirError(
      f"{path}: no header row naming all of {sorted(columns)} in the first {search_rows} rows "
      f"of any sheet; closest is {best[1] or 'none'}, which lacks {missing}")


def _match_header(values, columns) -> dict[str, int]:
  names = [normalise(v) for v in values]
  found = {}
  for field, aliases in columns.items():
    for alias in aliases:
      if alias in names:
        found[field] = names.index(alias)
        break
  return found


def _data_rows(file, header_number, rows, found, header_values):
  headers = {field: str(header_values[i]).strip() for field, i in found.items()}
  for number, values in enumerate(rows, start=header_number + 1):
    if all(v is None or str(v).strip() == "" for v in values):
      continue
    cells = {field: values[i] if i < len(values) else None for field, i in found.items()}
    yield Row(file, number, cells, headers)


def rows_to_clips(rows, make, report) -> list:
  """make(row) per row; rows it raises Skip for go into the report."""
  clips = []
  for row in rows:
    try:
      clips.append(make(row))
    except Skip as e:
      report.skip(row.where, str(e))
  return clips


def find_file(root: pathlib.Path, patterns: tuple[str, ...], what: str) -> pathlib.Path:
  """The first file matching a pattern in root or its subfolders, two levels down at most."""
  for pattern in patterns:
    hits = [h for depth in ("", "*/", "*/*/") for h in sorted(root.glob(depth + pattern))]
    hits = [h for h in hits if not h.name.startswith("~$")]  # Excel lock files
    if hits:
      return hits[0]
  raise ManualDirError(f"{root}: no {what} (looked for {', '.join(patterns)})")


def find_dir(root: pathlib.Path, candidates: tuple[str, ...], holding: str, what: str) -> pathlib.Path:
  """The first candidate folder under root with a subfolder named like `holding` (a regex)."""
  for candidate in candidates:
    folder = root / candidate
    if folder.is_dir() and any(p.is_dir() and re.fullmatch(holding, p.name) for p in folder.iterdir()):
      return folder
  raise ManualDirError(f"{root}: no {what} (looked for {', '.join(candidates)} holding "
                       f"folders named like {holding})")
