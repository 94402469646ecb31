"""Write the bundled sample PDFs with pyHanko's PDF writer (run once; the output is committed)."""

from __future__ import annotations

from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter

_DIR = Path(__file__).parent


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page(writer: PdfFileWriter, lines: list[str]) -> None:
    ops = ["BT", "/F1 12 Tf", "16 TL", "72 770 Td"]
    for i, line in enumerate(lines):
        size = 18 if i == 0 else 12
        ops.append(f"/F1 {size} Tf ({_escape(line)}) Tj T*")
    ops.append("ET")
    stream = generic.StreamObject(stream_data="\n".join(ops).encode("latin-1"))
    font = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Font"),
        generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
        generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
    })
    page = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
        generic.NameObject("/Contents"): writer.add_object(stream),
        generic.NameObject("/Resources"): generic.DictionaryObject({
            generic.NameObject("/Font"): generic.DictionaryObject({generic.NameObject("/F1"): writer.add_object(font)}),
        }),
    })
    writer.insert_page(page)


def write_pdf(path: Path, pages: list[list[str]]) -> None:
    """Write a simple text PDF with one list of lines per page."""
    writer = PdfFileWriter()
    for lines in pages:
        _page(writer, lines)
    with path.open("wb") as fh:
        writer.write(fh)


def main() -> None:
    """Write the sample PDFs next to this file."""
    write_pdf(_DIR / "employment-contract.pdf", [[
        "Employment contract (SignLab sample)",
        "",
        "Employer: SignLab Demo Partner AS, Oslo",
        "Employee: the person who signs this document",
        "Position: Quality engineer, start 1 September",
        "Salary: NOK 650 000 per year",
        "",
        "This document is a sample for the SignLab simulation.",
        "A signature made in SignLab has no legal effect.",
    ]])
    write_pdf(_DIR / "loan-agreement.pdf", [
        ["Loan agreement (SignLab sample)", "", "Lender: SignLab Demo Bank", "Amount: NOK 250 000",
         "Term: 5 years, fixed rate 5.1 %", "", "Page 1 of 2"],
        ["Loan agreement - terms", "", "1. Repayment monthly.", "2. Early repayment allowed without fee.",
         "", "Signed electronically through SignLab (simulation).", "Page 2 of 2"],
    ])


if __name__ == "__main__":
    main()
