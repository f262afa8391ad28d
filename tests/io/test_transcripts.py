"""Tests for mbtcode.io.transcripts (pure parsers; no Flask, no DB)."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest

from mbtcode.io import transcripts as tr
from mbtcode.io.transcripts import (
    ROLES,
    CsvColumns,
    ParsedTranscript,
    ParsedUtterance,
    Problem,
    TranscriptError,
    decode_text,
    default_role,
    parse_speaker_map,
    parse_timestamp,
    parse_transcript,
    resolve_roles,
)

DATA = Path(__file__).parent / "data" / "transcripts"


def parse(text: str | bytes, filename: str = "s.txt", **kw) -> ParsedTranscript:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_transcript(data, filename, **kw)


def problems(text: str | bytes, filename: str = "s.txt", **kw) -> list[Problem]:
    with pytest.raises(TranscriptError) as info:
        parse(text, filename, **kw)
    return info.value.problems


def one_problem(text: str | bytes, filename: str = "s.txt", **kw) -> Problem:
    found = problems(text, filename, **kw)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def rows(t: ParsedTranscript) -> list[tuple]:
    return [(u.speaker, u.text, u.start, u.end, u.line) for u in t.utterances]


# --------------------------------------------------------------------------------------
# Problem / TranscriptError
# --------------------------------------------------------------------------------------


def test_problem_str_with_line_and_hint():
    assert str(Problem("a.txt", 3, "bad", "fix it")) == "a.txt:3: bad — fix it"


def test_problem_str_without_line():
    assert str(Problem("a.txt", None, "bad")) == "a.txt: bad"


def test_problem_str_paragraph_unit():
    assert str(Problem("a.docx", 2, "bad", unit="paragraph")) == "a.docx, paragraph 2: bad"


def test_transcript_error_is_value_error_one_problem_per_line():
    err = TranscriptError([Problem("a", 1, "x"), Problem("b", None, "y")])
    assert isinstance(err, ValueError)
    assert str(err) == "a:1: x\nb: y"
    assert len(err.problems) == 2


def test_roles_constant():
    assert ROLES == ("therapist", "patient", "other")


# --------------------------------------------------------------------------------------
# txt
# --------------------------------------------------------------------------------------


def test_txt_fixture_individual_session():
    t = parse((DATA / "individual.txt").read_bytes(), "individual.txt")
    assert t.format == "txt"
    assert t.speakers == ("T", "P")
    assert rows(t) == [
        ("T", "Good morning. How have you been since last week?", 5.0, None, 2),
        ("P", "Not great. My sister called and I said: no, I can't come this weekend."
              "\nShe was furious.", 9.0, None, 3),
        ("T", "What do you think was going on in her mind when you said no?", 31.0, None, 7),
        ("P", "I don't know. Maybe she felt rejected?", 40.0, None, 8),
        ("T", "Let's stay with that for a moment.", None, None, 9),
    ]


def test_txt_positions_are_one_based_and_consecutive():
    t = parse("T: a\nP: b\nT: c\n")
    assert [u.position for u in t.utterances] == [1, 2, 3]


def test_txt_result_types():
    t = parse("T: a\n")
    assert isinstance(t.utterances, tuple)
    assert isinstance(t.utterances[0], ParsedUtterance)
    assert t.utterances[0] == ParsedUtterance(1, "T", "a", None, None, 1)


def test_txt_timestamp_before_speaker():
    assert rows(parse("[00:01:05] T: Hello\n")) == [("T", "Hello", 65.0, None, 1)]


def test_txt_timestamp_after_colon():
    assert rows(parse("T: [01:02:03] Hello\n")) == [("T", "Hello", 3723.0, None, 1)]


def test_txt_timestamp_with_milliseconds():
    assert parse("[00:00:01.250] T: Hi\n").utterances[0].start == 1.25


def test_txt_timestamp_minutes_seconds_form():
    assert parse("[12:30] T: Hi\n").utterances[0].start == 750.0


def test_txt_timestamps_are_optional_per_utterance():
    t = parse("[00:00:01] T: a\nP: b\n[00:00:09] T: c\n")
    assert [u.start for u in t.utterances] == [1.0, None, 9.0]


def test_txt_continuation_lines_joined_with_single_space():
    t = parse("T: first line\n   second line\nthird line\n")
    assert t.utterances[0].text == "first line second line third line"


def test_txt_blank_line_inside_utterance_becomes_paragraph_break():
    t = parse("P: one\n\n\ntwo\nthree\n")
    assert t.utterances[0].text == "one\ntwo three"


def test_txt_blank_lines_between_utterances_are_ignored():
    t = parse("T: a\n\n\nP: b\n\n")
    assert rows(t) == [("T", "a", None, None, 1), ("P", "b", None, None, 4)]


def test_txt_speaker_line_without_text_takes_following_lines():
    assert parse("T:\nHello there\n").utterances[0].text == "Hello there"


def test_txt_colon_in_sentence_is_not_a_new_speaker():
    t = parse("P: My mother called.\nI said: no.\nThen she said: fine\n")
    assert t.speakers == ("P",)
    assert t.utterances[0].text == "My mother called. I said: no. Then she said: fine"


def test_txt_long_prefix_before_colon_is_not_a_speaker():
    t = parse("P: Well\nAnd The Four Of Us: went home\n")
    assert t.speakers == ("P",)


def test_txt_capitalised_two_word_label_is_a_speaker():
    t = parse("Dr Smith: Hello\nPatient A: Hi\n")
    assert t.speakers == ("Dr Smith", "Patient A")


def test_txt_time_of_day_is_not_a_speaker():
    t = parse("P: We met at\n10:30 in the morning.\nhttp://example.org was open\n")
    assert t.speakers == ("P",)
    assert t.utterances[0].text == "We met at 10:30 in the morning. http://example.org was open"


def test_txt_space_before_colon_and_tab_after():
    assert rows(parse("Patient A :\tHi\n")) == [("Patient A", "Hi", None, None, 1)]


def test_txt_repeated_spaces_in_label_are_collapsed():
    assert parse("Patient  A: Hi\n").speakers == ("Patient A",)


@pytest.mark.parametrize("label", ["T", "Th", "P1", "Patient A", "TH-04", "Therapeutin",
                                   "Pt 2", "O'Neil", "Dr. Müller", "T_1"])
def test_txt_accepts_label_forms(label):
    assert parse(f"{label}: Hello\n").speakers == (label,)


def test_txt_hash_lines_are_comments():
    t = parse("# header comment\nT: a\n# between\ncontinued\n")
    assert rows(t) == [("T", "a continued", None, None, 2)]


def test_txt_indented_hash_is_text():
    assert parse("T: a\n  # not a comment\n").utterances[0].text == "a # not a comment"


def test_txt_bracketed_annotation_is_text():
    t = parse("T: a\n[laughs] yes\nP: [inaudible] ok\n")
    assert rows(t) == [("T", "a [laughs] yes", None, None, 1),
                       ("P", "[inaudible] ok", None, None, 3)]


def test_txt_first_line_without_speaker_is_error():
    p = one_problem("\n\nHello there\nT: Hi\n")
    assert (p.file, p.line) == ("s.txt", 3)
    assert p.message == "the first line has no speaker label"
    assert "SPEAKER: text" in p.hint


def test_txt_first_line_webvtt_gets_hint():
    p = one_problem("WEBVTT\n\n00:01.000 --> 00:02.000\nT: hi\n")
    assert "--format vtt" in p.hint


def test_txt_group_session_with_co_therapists():
    t = parse((DATA / "group.txt").read_bytes(), "group.txt")
    assert t.speakers == ("T1", "P1", "P2", "T2", "P3")
    assert t.utterances[5].text == "So this week at work my boss ignored me in the meeting."
    assert resolve_roles(t) == {"T1": "therapist", "P1": "patient", "P2": "patient",
                                "T2": "therapist", "P3": "patient"}


def test_txt_minutes_over_59_is_error():
    p = one_problem("[00:61:00] T: Hi\n")
    assert p.line == 1
    assert p.message == "invalid timestamp '00:61:00': minutes must be below 60"


def test_txt_seconds_over_59_is_error():
    p = one_problem("T: ok\n[00:01:75] P: Hi\n")
    assert p.line == 2
    assert p.message == "invalid timestamp '00:01:75': seconds must be below 60"


def test_txt_mmss_over_an_hour_suggests_hours():
    assert "use hh:mm:ss" in one_problem("[75:00] T: Hi\n").message


def test_txt_garbage_timestamp_is_error():
    p = one_problem("T: a\n[00:ab:10] P: Hi\n")
    assert p.line == 2
    assert p.message.startswith("invalid timestamp '00:ab:10' (expected hh:mm:ss")


def test_txt_timestamp_out_of_order_is_error():
    p = one_problem("[00:02:00] T: a\n[00:01:00] P: b\n")
    assert p.line == 2
    assert "out of order" in p.message
    assert "00:01:00" in p.message and "00:02:00" in p.message


def test_txt_equal_timestamps_are_fine():
    assert len(parse("[00:01:00] T: a\n[00:01:00] P: b\n").utterances) == 2


def test_txt_timestamp_without_speaker_is_error():
    p = one_problem("T: a\n[00:00:05] and then\n")
    assert p.line == 2
    assert p.message == "expected 'SPEAKER: text' after the timestamp [00:00:05]"


def test_txt_utterance_without_text_is_error():
    p = one_problem("T: a\nP:\nT: b\n")
    assert (p.line, p.message) == (2, "utterance by 'P' has no text")


def test_txt_collects_all_problems_in_line_order():
    found = problems("[00:99:00] T: a\nP:\n[00:00:xx] T: b\n")
    assert [(p.line, p.message.split(" (")[0]) for p in found] == [
        (1, "invalid timestamp '00:99:00': minutes must be below 60"),
        (2, "utterance by 'P' has no text"),
        (3, "invalid timestamp '00:00:xx'"),
    ]


def test_txt_html_and_script_kept_verbatim():
    text = "<script>alert('x')</script> & <b>bold</b>"
    assert parse(f"T: {text}\n").utterances[0].text == text


def test_sha256_is_hash_of_raw_bytes():
    raw = "\ufeffT: Grüße\r\nP: ok\r\n".encode("utf-8")
    assert parse(raw).sha256 == hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------------------
# Encodings and line endings
# --------------------------------------------------------------------------------------

TEXT = "T: Grüß Gott – café\nP: Ça va\n"
EXPECTED = [("T", "Grüß Gott – café", None, None, 1), ("P", "Ça va", None, None, 2)]


def test_utf8_with_bom():
    assert rows(parse(b"\xef\xbb\xbf" + TEXT.encode())) == EXPECTED


def test_utf16_le_with_bom():
    assert rows(parse(b"\xff\xfe" + TEXT.encode("utf-16-le"))) == EXPECTED


def test_utf16_be_with_bom():
    assert rows(parse(b"\xfe\xff" + TEXT.encode("utf-16-be"))) == EXPECTED


def test_crlf_line_endings():
    assert rows(parse(TEXT.replace("\n", "\r\n").encode())) == EXPECTED


def test_cr_only_line_endings():
    assert rows(parse(TEXT.replace("\n", "\r").encode())) == EXPECTED


def test_decode_text_normalises_line_endings():
    assert decode_text(b"a\r\nb\rc\n", "x") == "a\nb\nc\n"


def test_invalid_utf8_reports_offset_line_and_suggestion():
    raw = "T: ok\nP: Très bien, déjà vu, ça va très bien merci\n".encode("cp1252")
    p = one_problem(raw)
    assert p.line == 2
    assert p.message == "file is not valid UTF-8 (byte 0xE8 at byte offset 11)"
    assert "re-save it as UTF-8" in p.hint


def test_utf16_without_bom_is_refused_with_hint():
    p = one_problem(TEXT.encode("utf-16-le"))
    assert "NUL bytes" in p.message
    assert "UTF-16 text without a byte order mark" in p.hint


def test_nul_bytes_are_binary():
    p = one_problem(b"T: hello\x00\x01\x02 world\n" * 3 + b"x" * 200)
    assert p.message.startswith("file contains NUL bytes")


@pytest.mark.parametrize("magic, what", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
    (b"%PDF-1.7\n%\xe2\xe3", "a PDF document"),
    (b"GIF89a\x01\x00", "a GIF image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
])
def test_binary_magic_numbers_are_refused(magic, what):
    p = one_problem(magic, "session.txt")
    assert (p.file, p.line) == ("session.txt", None)
    assert p.message == f"this is {what}, not a transcript"


def _zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def test_zip_named_txt_is_refused():
    p = one_problem(_zip_bytes({"a.txt": "T: hi"}))
    assert p.message == "this is a ZIP archive, not a transcript"


def test_docx_named_txt_suggests_docx_format(docx_bytes):
    p = one_problem(docx_bytes(["T: hi"]), "session.txt")
    assert p.message == "this is a Word document (.docx), not a text file"
    assert "--format docx" in p.hint


# --------------------------------------------------------------------------------------
# Empty files and limits
# --------------------------------------------------------------------------------------


def test_empty_file_is_error():
    assert str(one_problem(b"")) == "s.txt: file is empty"


def test_whitespace_only_file_is_error():
    assert one_problem(b" \r\n\t\n\n").message == "file is empty (only whitespace)"


def test_comments_only_file_has_no_utterances():
    assert one_problem("# nothing here\n").message == "no utterances found in the file"


def test_oversized_file_is_refused_before_parsing():
    p = one_problem(b"T: hello\n" * 200, max_bytes=1024)
    assert p.message == "file is too large (1.8 KB; the limit is 1 KB)"


def test_default_size_limit_is_20_mb():
    assert tr.MAX_BYTES == 20 * 1024 * 1024
    p = one_problem(b"x" * (20 * 1024 * 1024 + 1))
    assert p.message == "file is too large (20 MB; the limit is 20 MB)"


def test_too_many_utterances(monkeypatch):
    monkeypatch.setattr(tr, "MAX_UTTERANCES", 3)
    p = one_problem("T: a\nP: b\nT: c\nP: d\nT: e\n")
    assert (p.line, p.message) == (4, "too many utterances (the limit is 3)")


def test_utterance_limit_default():
    assert tr.MAX_UTTERANCES == 50_000


def test_utterance_too_long():
    p = one_problem("T: ok\nP: " + "x" * 20_001 + "\n")
    assert p.line == 2
    assert p.message == "utterance by 'P' is too long (20,001 characters; the limit is 20,000)"


def test_utterance_at_length_limit_is_fine():
    assert len(parse("P: " + "x" * 20_000).utterances[0].text) == 20_000


def test_problem_list_is_capped(monkeypatch):
    monkeypatch.setattr(tr, "MAX_PROBLEMS", 2)
    found = problems("T:\nP:\nT:\nP:\n")
    assert len(found) == 3
    assert found[-1].message == "… and 2 more problem(s) in this file not shown"


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def test_csv_fixture_with_times_and_extra_column():
    t = parse((DATA / "session.csv").read_bytes(), "session.csv")
    assert t.format == "csv"
    assert rows(t) == [
        ("T", "Good morning, how are you?", 0.0, 2.5, 2),
        ("P", "Fine, I guess.", 3.0, 4.25, 3),
        ("T", "You guess?", 5.0, 6.0, 4),
    ]


def test_csv_synonym_headers_case_insensitive():
    t = parse("Speaker_Label,Utterance,Start_Time\nT,hi,1\n", "s.csv")
    assert rows(t) == [("T", "hi", 1.0, None, 2)]


def test_csv_content_synonym():
    assert parse("speaker,CONTENT\nP,hi\n", "s.csv").utterances[0].text == "hi"


def test_csv_custom_column_names():
    cols = CsvColumns(speaker="Sprecher", text="Aussage_Text", start="von", end="bis")
    t = parse("Sprecher,Aussage_Text,von,bis\nT,hallo,1,2\n", "s.csv", csv_columns=cols)
    assert rows(t) == [("T", "hallo", 1.0, 2.0, 2)]


def test_csv_semicolon_delimiter_and_decimal_comma():
    t = parse("speaker;text;start\nT;Hallo, wie geht's?;1,5\n", "s.csv")
    assert rows(t) == [("T", "Hallo, wie geht's?", 1.5, None, 2)]


def test_csv_tab_delimiter_tsv_extension():
    t = parse("speaker\ttext\nT\tHello, you\n", "s.tsv")
    assert t.format == "csv"
    assert t.utterances[0].text == "Hello, you"


def test_csv_quoted_multiline_text_keeps_newline_and_row_start_line():
    t = parse('speaker,text\nT,"line one\nline two"\nP,ok\n', "s.csv")
    assert rows(t) == [("T", "line one\nline two", None, None, 2), ("P", "ok", None, None, 4)]


def test_csv_missing_columns_names_columns_found():
    p = one_problem("who_speaks,words_said\nT,hi\n", "s.csv")
    assert p.line == 1
    assert p.message == ("missing required column(s) 'speaker', 'text'; columns found: "
                         "'who_speaks', 'words_said'")
    assert "accepted names for the speaker column" in p.hint


def test_csv_missing_custom_column_mentions_configuration():
    p = one_problem("speaker,text\nT,hi\n", "s.csv", csv_columns=CsvColumns(text="aussage"))
    assert p.message.startswith("missing required column(s) 'aussage'")
    assert "configured as 'aussage'" in p.hint


def test_csv_header_only_has_no_utterances():
    assert one_problem("speaker,text\n", "s.csv").message == "no utterances found in the file"


def test_csv_end_before_start_is_error():
    p = one_problem("speaker,text,start,end\nT,a,10,5\n", "s.csv")
    assert (p.line, p.message) == (2, "end 00:00:05 is before start 00:00:10")


def test_csv_garbage_time_is_error():
    p = one_problem("speaker,text,start\nT,a,soon\n", "s.csv")
    assert p.line == 2
    assert p.message.startswith("start: invalid time 'soon'")


def test_csv_broken_timestamp_is_error():
    p = one_problem("speaker,text,start\nT,a,00:61:00\n", "s.csv")
    assert p.message == "start: invalid timestamp '00:61:00': minutes must be below 60"


def test_csv_out_of_order_is_error():
    p = one_problem("speaker,text,start\nT,a,10\nP,b,3\n", "s.csv")
    assert p.line == 3 and "out of order" in p.message


def test_csv_row_without_speaker_is_error():
    p = one_problem("speaker,text\nT,a\n,b\n", "s.csv")
    assert (p.line, p.message) == (3, "row has no speaker")


def test_csv_invalid_speaker_label_is_error():
    p = one_problem("speaker,text\nTherapist (A),a\n", "s.csv")
    assert p.message == "invalid speaker label 'Therapist (A)'"


def test_csv_empty_text_is_error():
    assert one_problem("speaker,text\nT,\n", "s.csv").message == "utterance by 'T' has no text"


def test_csv_blank_rows_skipped():
    assert len(parse("speaker,text\n\nT,a\n,\nP,b\n", "s.csv").utterances) == 2


def test_csv_html_kept_verbatim():
    t = parse('speaker,text\nP,"<img src=x onerror=alert(1)>"\n', "s.csv")
    assert t.utterances[0].text == "<img src=x onerror=alert(1)>"


def test_csv_unbalanced_quote_is_reported():
    found = problems('speaker,text\nT,"open quote\n' + "x" * 200_000 + "\n", "s.csv")
    assert found[0].message.startswith("CSV syntax error")


# --------------------------------------------------------------------------------------
# WebVTT
# --------------------------------------------------------------------------------------


def test_vtt_fixture_skips_blocks_strips_tags_and_continues_speaker():
    t = parse((DATA / "session.vtt").read_bytes(), "session.vtt")
    assert t.format == "vtt"
    assert t.speakers == ("Th", "Patient A")
    assert rows(t) == [
        ("Th", "Hello, welcome back.", 1.0, 4.5, 14),
        ("Patient A", "I wasn't sure I'd come & I almost didn't. It was a hard week.",
         5.0, 10.0, 17),
        ("Th", "What made it hard?", 11.0, 13.0, 23),
    ]


def test_vtt_missing_header_is_error():
    p = one_problem("00:00:01.000 --> 00:00:02.000\nT: hi\n", "s.vtt")
    assert (p.line, p.message) == (1, "missing 'WEBVTT' header")


def test_vtt_header_only_has_no_utterances():
    assert one_problem("WEBVTT\n\n", "s.vtt").message == "no utterances found in the file"


def test_vtt_note_style_region_blocks_skipped():
    text = ("WEBVTT\n\nNOTE a: b\n00:00:01.000 --> x\n\nSTYLE\n::cue {}\n\nREGION\nid:r\n\n"
            "00:00:01.000 --> 00:00:02.000\nT: hi\n")
    assert rows(parse(text, "s.vtt")) == [("T", "hi", 1.0, 2.0, 13)]


def test_vtt_cue_settings_ignored():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.500 line:0 position:20% align:end\nT: hi\n",
              "s.vtt")
    assert (t.utterances[0].start, t.utterances[0].end) == (1.0, 2.5)


def test_vtt_tags_stripped_and_entities_decoded():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\n<v T><i>a</i> <b>b</b> <c.red.x>c</c> "
              "<u>d</u> <00:01.500>e &lt;3 &amp; <lang de>f</lang></v>\n", "s.vtt")
    assert t.utterances[0].text == "a b c d e <3 & f"


def test_vtt_unknown_tags_are_kept_verbatim():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\n<v T><script>x</script></v>\n", "s.vtt")
    assert t.utterances[0].text == "<script>x</script>"


def test_vtt_two_voices_in_one_cue():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\n<v P1>Yes</v>\n<v P2>No</v>\n", "s.vtt")
    assert rows(t) == [("P1", "Yes", 1.0, 2.0, 4), ("P2", "No", 1.0, 2.0, 5)]


def test_vtt_two_voices_on_one_line():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\n<v T1>Hi</v> <v T2>Hello</v>\n", "s.vtt")
    assert [(u.speaker, u.text) for u in t.utterances] == [("T1", "Hi"), ("T2", "Hello")]


def test_vtt_cue_without_speaker_continues_previous_speaker():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\nP: one\n\n"
              "00:02.000 --> 00:04.000\ntwo\nthree\n", "s.vtt")
    assert rows(t) == [("P", "one two three", 1.0, 4.0, 4)]


def test_vtt_first_cue_without_speaker_is_error():
    p = one_problem("WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n", "s.vtt")
    assert (p.line, p.message) == (4, "the first cue has no speaker")


def test_vtt_colon_sentence_in_cue_is_not_a_speaker():
    t = parse("WEBVTT\n\n00:01.000 --> 00:02.000\nP: ok\nshe said: no\n", "s.vtt")
    assert rows(t) == [("P", "ok she said: no", 1.0, 2.0, 4)]


def test_vtt_invalid_timing_is_error():
    p = one_problem("WEBVTT\n\n00:01.000 --> 00:0x.000\nT: hi\n", "s.vtt")
    assert p.line == 3
    assert p.message.startswith("cue end: invalid timestamp '00:0x.000'")


def test_vtt_end_before_start_is_error():
    p = one_problem("WEBVTT\n\n00:05.000 --> 00:01.000\nT: hi\n", "s.vtt")
    assert (p.line, p.message) == (3, "cue ends (00:00:01) before it starts (00:00:05)")


def test_vtt_cues_out_of_order_is_error():
    p = one_problem("WEBVTT\n\n00:05.000 --> 00:06.000\nT: a\n\n"
                    "00:01.000 --> 00:02.000\nP: b\n", "s.vtt")
    assert p.line == 6 and "out of order" in p.message


def test_vtt_block_without_timing_is_error():
    p = one_problem("WEBVTT\n\n00:01.000 --> 00:02.000\nT: a\n\nstray text\n", "s.vtt")
    assert (p.line, p.message) == (6, "expected a cue timing line")


def test_vtt_invalid_voice_name_is_error():
    p = one_problem("WEBVTT\n\n00:01.000 --> 00:02.000\n<v T (loud)>hi</v>\n", "s.vtt")
    assert p.message == "invalid speaker name 'T (loud)' in voice tag"


# --------------------------------------------------------------------------------------
# SRT
# --------------------------------------------------------------------------------------


def test_srt_fixture():
    t = parse((DATA / "session.srt").read_bytes(), "session.srt")
    assert t.format == "srt"
    assert rows(t) == [
        ("T", "Hello, how are you today?", 1.0, 3.0, 3),
        ("P", "Tired. I didn't sleep. I kept thinking about it.", 3.5, 7.25, 7),
        ("T", "About what happened with your mother?", 8.0, 10.0, 15),
    ]


def test_srt_font_tags_stripped():
    t = parse('1\n00:00:01,000 --> 00:00:02,000\nT: <font color="red">hi</font>\n', "s.srt")
    assert t.utterances[0].text == "hi"


def test_srt_end_before_start_is_error():
    p = one_problem("1\n00:00:05,000 --> 00:00:01,000\nT: hi\n", "s.srt")
    assert (p.line, p.message) == (2, "cue ends (00:00:01) before it starts (00:00:05)")


def test_srt_block_without_timing_is_error():
    p = one_problem("1\n00:00:01,000 --> 00:00:02,000\nT: a\n\n2\nP: b\n", "s.srt")
    assert (p.line, p.message) == (5, "expected a subtitle number followed by a timing line")


def test_srt_first_cue_without_speaker_is_error():
    assert one_problem("1\n00:00:01,000 --> 00:00:02,000\nhello\n",
                       "s.srt").message == "the first cue has no speaker"


def test_srt_crlf_and_bom():
    raw = b"\xef\xbb\xbf1\r\n00:00:01,000 --> 00:00:02,000\r\nT: hi\r\n\r\n"
    assert rows(parse(raw, "s.srt")) == [("T", "hi", 1.0, 2.0, 3)]


# --------------------------------------------------------------------------------------
# docx
# --------------------------------------------------------------------------------------


@pytest.fixture
def docx_bytes(tmp_path):
    import docx

    def make(paragraphs: list[str], table: bool = False) -> bytes:
        document = docx.Document()
        for text in paragraphs:
            if "\n" in text:  # soft line break inside one paragraph
                first, second = text.split("\n", 1)
                para = document.add_paragraph(first)
                para.add_run().add_break()
                para.add_run(second)
            else:
                document.add_paragraph(text)
        if table:
            cells = document.add_table(rows=1, cols=2).rows[0].cells
            cells[0].text, cells[1].text = "T", "hi"
        path = tmp_path / "session.docx"
        document.save(path)
        return path.read_bytes()

    return make


def test_docx_paragraphs_with_timestamps(docx_bytes):
    raw = docx_bytes(["[00:00:01] T: Hello", "", "P: [00:00:04] Hi\nsecond line",
                      "more text", "T1: ok"])
    t = parse(raw, "session.docx")
    assert t.format == "docx"
    assert rows(t) == [
        ("T", "Hello", 1.0, None, 1),
        ("P", "Hi second line more text", 4.0, None, 3),
        ("T1", "ok", None, None, 5),
    ]


def test_docx_first_paragraph_without_speaker_says_paragraph(docx_bytes):
    p = one_problem(docx_bytes(["Session 4 transcript", "T: hi"]), "s.docx")
    assert p.message == "the first paragraph has no speaker label"
    assert str(p).startswith("s.docx, paragraph 1: the first paragraph")


def test_docx_detected_by_content_without_extension(docx_bytes):
    assert parse(docx_bytes(["T: hi"]), "upload").format == "docx"


def test_docx_only_table_gets_hint(docx_bytes):
    p = one_problem(docx_bytes([], table=True), "s.docx")
    assert "Word tables are not read" in p.hint


def test_docx_corrupt_archive_is_error():
    p = one_problem(_zip_bytes({"word/document.xml": "<not xml"}), "s.docx")
    assert p.message == "not a valid Word .docx file"


def test_docx_text_file_named_docx_is_error():
    p = one_problem("T: hi\n", "s.docx")
    assert p.message == "not a valid Word .docx file"
    assert "--format txt" in p.hint


def test_docx_png_named_docx_is_error():
    assert one_problem(b"\x89PNG\r\n\x1a\nxxxx", "s.docx").message == \
        "this is a PNG image, not a transcript"


# --------------------------------------------------------------------------------------
# Format selection
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [
    ("a.txt", "txt"), ("A.TXT", "txt"), ("a.csv", "csv"), ("a.tsv", "csv"),
    ("a.vtt", "vtt"), ("a.srt", "srt"),
])
def test_format_by_extension(name, fmt):
    content = {
        "txt": "T: hi\n", "csv": "speaker,text\nT,hi\n", "vtt": "WEBVTT\n\n00:01.000 --> "
        "00:02.000\nT: hi\n", "srt": "1\n00:00:01,000 --> 00:00:02,000\nT: hi\n",
    }[fmt]
    if name.endswith(".tsv"):
        content = content.replace(",", "\t")
    assert parse(content, name).format == fmt


@pytest.mark.parametrize("content, fmt", [
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nT: hi\n", "vtt"),
    ("\n1\n00:00:01,000 --> 00:00:02,000\nT: hi\n", "srt"),
    ("speaker;text\nT;hi\n", "csv"),
    ("T: hi\n", "txt"),
])
def test_format_sniffed_for_unknown_extension(content, fmt):
    assert parse(content, "upload.dat").format == fmt


def test_explicit_format_overrides_extension():
    assert parse("speaker,text\nT,hi\n", "a.txt", fmt="csv").format == "csv"


def test_unknown_format_is_error():
    p = one_problem("T: hi", fmt="pdf")
    assert p.message == "unknown format 'pdf'"
    assert "auto, txt, csv, vtt, srt, docx" in p.hint


# --------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, seconds", [
    ("00:00:00", 0.0), ("1:02:03", 3723.0), ("00:01:05.5", 65.5), ("00:01:05,250", 65.25),
    ("59:59", 3599.0), ("100:00:00", 360000.0), ("00:00:01.001", 1.001),
])
def test_parse_timestamp_valid(value, seconds):
    assert parse_timestamp(value) == seconds


@pytest.mark.parametrize("value", ["", "1", "00:60", "00:00:60", "aa:bb", "00:00:01.0001",
                                   "-00:01", "00:01:"])
def test_parse_timestamp_invalid(value):
    with pytest.raises(ValueError, match="invalid timestamp"):
        parse_timestamp(value)


# --------------------------------------------------------------------------------------
# Speaker roles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, role", [
    ("T", "therapist"), ("t", "therapist"), ("Th", "therapist"), ("Th.", "therapist"),
    ("Ther", "therapist"), ("Therapist", "therapist"), ("THERAPEUT", "therapist"),
    ("Therapeutin", "therapist"), ("Co-therapist", "therapist"), ("Cotherapist", "therapist"),
    ("CT", "therapist"), ("T1", "therapist"), ("T-2", "therapist"), ("TH-04", "therapist"),
    ("Therapist B", "therapist"), ("Co-Therapeutin 2", "therapist"),
    ("P", "patient"), ("Pt", "patient"), ("Pat", "patient"), ("Patient", "patient"),
    ("Patientin", "patient"), ("Client", "patient"), ("Klient", "patient"),
    ("Klientin", "patient"), ("C", "patient"), ("P3", "patient"), ("Patient A", "patient"),
    ("Pt 2", "patient"), ("PT-013", "patient"), ("Pt. 2", "patient"),
    ("Other", "other"), ("Unknown", "other"), ("Observer", "other"),
    ("Interviewer", "other"), ("X", "other"),
])
def test_default_role(label, role):
    assert default_role(label) == role


@pytest.mark.parametrize("label", ["Anna", "Speaker 1", "SPEAKER_00", "Tom", "Pia", "Mother",
                                   "TA", "Dr Smith"])
def test_default_role_unknown(label):
    assert default_role(label) is None


def test_resolve_roles_defaults():
    t = parse("T1: a\nP1: b\nPatient B: c\nOther: d\n")
    assert resolve_roles(t) == {"T1": "therapist", "P1": "patient", "Patient B": "patient",
                                "Other": "other"}


def test_resolve_roles_unknown_speaker_error_points_to_speaker_map():
    t = parse("T: a\nAnna: b\nT: c\nAnna: d\n")
    with pytest.raises(TranscriptError) as info:
        resolve_roles(t)
    (p,) = info.value.problems
    assert (p.file, p.line, p.message) == ("s.txt", 2, "unknown speaker 'Anna'")
    assert '--speaker-map "Anna=therapist"' in str(p)
    assert "speaker_map column" in p.hint


def test_resolve_roles_one_problem_per_unknown_label():
    t = parse("Anna: a\nBen: b\nAnna: c\n")
    with pytest.raises(TranscriptError) as info:
        resolve_roles(t)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (1, "unknown speaker 'Anna'"), (2, "unknown speaker 'Ben'")]


def test_resolve_roles_explicit_map_overrides_default():
    t = parse("T: a\nP: b\n")
    assert resolve_roles(t, {"T": "patient", "P": "therapist"}) == {"T": "patient",
                                                                  "P": "therapist"}


def test_resolve_roles_map_is_case_insensitive():
    t = parse("ANNA: a\n")
    assert resolve_roles(t, {"anna": "patient"}) == {"ANNA": "patient"}


def test_resolve_roles_exact_label_beats_case_insensitive_match():
    t = parse("Anna: a\n")
    assert resolve_roles(t, {"anna": "other", "Anna": "patient"}) == {"Anna": "patient"}


def test_resolve_roles_map_role_case_insensitive():
    assert resolve_roles(parse("Anna: a\n"), {"Anna": "Patient"}) == {"Anna": "patient"}


def test_resolve_roles_unused_map_entries_are_fine():
    assert resolve_roles(parse("T: a\n"), {"P9": "patient"}) == {"T": "therapist"}


def test_resolve_roles_rejects_invalid_role_in_map():
    t = parse("T: a\n")
    with pytest.raises(TranscriptError, match="unknown role 'boss'"):
        resolve_roles(t, {"T": "boss"})


def test_resolve_roles_docx_problem_says_paragraph(docx_bytes):
    t = parse(docx_bytes(["T: hi", "Anna: hello"]), "s.docx")
    with pytest.raises(TranscriptError) as info:
        resolve_roles(t)
    assert str(info.value).startswith("s.docx, paragraph 2: unknown speaker 'Anna'")


# --------------------------------------------------------------------------------------
# parse_speaker_map
# --------------------------------------------------------------------------------------


def test_parse_speaker_map_commas():
    assert parse_speaker_map("T1=therapist,P1=patient") == {"T1": "therapist",
                                                            "P1": "patient"}


def test_parse_speaker_map_semicolons_spaces_and_role_case():
    assert parse_speaker_map(" Patient A = Patient ; X=OTHER; ") == {"Patient A": "patient",
                                                                     "X": "other"}


def test_parse_speaker_map_empty():
    assert parse_speaker_map("") == {}


def test_parse_speaker_map_missing_equals():
    with pytest.raises(TranscriptError) as info:
        parse_speaker_map("T1:therapist")
    (p,) = info.value.problems
    assert str(p) == ("--speaker-map: invalid speaker map entry 'T1:therapist' — write "
                      "LABEL=ROLE, e.g. \"T1=therapist,P1=patient\"")


def test_parse_speaker_map_unknown_role_lists_roles():
    with pytest.raises(TranscriptError) as info:
        parse_speaker_map("T1=doctor", source="cli")
    (p,) = info.value.problems
    assert (p.file, p.message) == ("cli", "unknown role 'doctor' for speaker 'T1'")
    assert p.hint == "roles are: therapist, patient, other"


def test_parse_speaker_map_invalid_label():
    with pytest.raises(TranscriptError, match=r"invalid speaker label '\(T\)'"):
        parse_speaker_map("(T)=therapist")


def test_parse_speaker_map_conflicting_entries():
    with pytest.raises(TranscriptError, match="mapped twice"):
        parse_speaker_map("T=therapist,t=patient")


def test_parse_speaker_map_reports_every_bad_entry():
    with pytest.raises(TranscriptError) as info:
        parse_speaker_map("a=b,c,d=therapist")
    assert len(info.value.problems) == 2


# --------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------


def test_parse_600_utterances_is_fast():
    lines = []
    for i in range(600):
        lines.append(f"[{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}] "
                     f"{'T' if i % 2 else 'P1'}: Utterance {i}, where I said: something.")
        if i % 5 == 0:
            lines.append("a continuation line")
    raw = "\n".join(lines).encode()
    assert len(parse(raw).utterances) == 600
    best = min(_timed(lambda: parse(raw)) for _ in range(5))
    assert best < 0.05  # typically a few ms; generous for loaded CI machines


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
