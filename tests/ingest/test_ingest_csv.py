"""CSV through the shipped GP and council mappings: BOM, `;`, three date formats, quoted
fields with commas and line breaks, blank rows, bad rows that never stop the file."""

from __future__ import annotations

from ingest_helpers import TODAY, by_code, mapped, of_type, only, rejected, run

from fhir_gateway.ingest import Rejection

GP_HEADER = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
             "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
             "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death")
GP_ROW = {
    "NHS Number": "943 476 5919", "Surname": "WHITE", "Forename": "Patricia Margaret",
    "Date of Birth": "03/11/1961", "Sex": "F", "Practice Code": "Y90028", "Usual GP": "Dr Clarke",
    "Palliative Register Date": "29/11/2025", "GSF Code": "Blue",
    "Preferred Place of Death": "Care Home", "PPD Recorded": "25/12/2025", "DNACPR": "Y",
    "DNACPR Date": "11/02/2026", "Care Plan Summary": "Advance care plan discussed",
    "Last Reviewed": "11/03/2026", "Date of Death": "", "Place of Death": "",
}
SC_HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
             "Service Start,Service End,Provider,Key Worker")


def gp_row(sep: str = ",", **changes: str) -> str:
    row = {**GP_ROW, **{k.replace("_", " "): v for k, v in changes.items()}}
    return sep.join(row[name] for name in GP_HEADER.split(","))


def gp_file(*rows: str, sep: str = ",", eol: str = "\r\n") -> str:
    return eol.join([GP_HEADER.replace(",", sep), *rows]) + eol


def test_a_register_row() -> None:
    record = only(run("gp", gp_file(gp_row()), "palliative_register.csv"))
    assert record.source.position == "line 2"
    assert record.source.raw == gp_row() + "\r\n"
    assert record.person.nhs_number == "9434765919"
    assert record.person.nhs_number_given == "943 476 5919"
    assert record.person.local_id == "9434765919"
    assert record.person.given == "Patricia"
    assert record.patient["name"][0]["given"] == ["Patricia", "Margaret"]
    [cpr] = by_code(record, "304251008")
    assert cpr["effectiveDateTime"] == "2026-02-11"
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    [ppd] = by_code(record, "preferred-place-of-death")
    assert ppd["valueCodeableConcept"]["coding"][0] == {
        "system": "https://fhir.shared-care-record.example/CodeSystem/death-location-type",
        "code": "40", "display": "Care home"}
    assert ppd["effectiveDateTime"] == "2025-12-25"
    assert len(of_type(record, "CarePlan")) == 1


def test_utf8_byte_order_mark() -> None:
    record = only(run("gp", b"\xef\xbb\xbf" + gp_file(gp_row()).encode()))
    assert record.person.nhs_number == "9434765919"


def test_semicolon_delimiter_is_sniffed() -> None:
    record = only(run("gp", gp_file(gp_row(sep=";"), sep=";")))
    assert record.person.family == "WHITE"
    assert by_code(record, "304251008")


def test_the_three_date_formats_give_the_same_dates() -> None:
    rows = [
        gp_row(),
        gp_row(**{"Date of Birth": "1961-11-03", "DNACPR Date": "2026-02-11",
                  "PPD Recorded": "2025-12-25"}),
        gp_row(**{"Date of Birth": "03-Nov-1961", "DNACPR Date": "11-Feb-2026",
                  "PPD Recorded": "25-Dec-2025"}),
    ]
    records = mapped(run("gp", gp_file(*rows)))
    assert len(records) == 3
    for record in records:
        assert record.person.birth_date == "1961-11-03"
        assert by_code(record, "304251008")[0]["effectiveDateTime"] == "2026-02-11"
        assert by_code(record, "preferred-place-of-death")[0]["effectiveDateTime"] == "2025-12-25"


def test_quoted_fields_with_commas_quotes_and_line_breaks() -> None:
    summary = '"Symptom control, at home;\nDN twice weekly, ""no admission""\nreview monthly"'
    text = gp_file(gp_row(**{"Care Plan Summary": summary}), gp_row(NHS_Number="9000000009"),
                   eol="\n")
    first, second = run("gp", text)
    assert first.source.position == "line 2"
    assert second.source.position == "line 5"  # the quoted field spans lines 2 to 4
    [plan] = of_type(first, "CarePlan")
    assert plan["description"] == ('Symptom control, at home;\nDN twice weekly, "no admission"'
                                   "\nreview monthly")
    assert first.source.raw.count("\n") == 3


def test_blank_rows_and_blank_trailing_rows_are_skipped() -> None:
    text = gp_file(gp_row(), "", gp_row(NHS_Number="9000000009"), ",,,,,,,,,,,,,,,,", "", "  ",
                   ",,,")
    results = run("gp", text)
    assert [r.source.position for r in results] == ["line 2", "line 4"]


def test_cr_only_line_ends() -> None:
    results = run("gp", gp_file(gp_row(), gp_row(NHS_Number="9000000009"), eol="\r"))
    assert [r.source.position for r in mapped(results)] == ["line 2", "line 3"]


def test_bad_check_digit_and_impossible_date_are_rejected_the_rest_loads() -> None:
    text = gp_file(gp_row(), gp_row(NHS_Number="8493407225"),
                   gp_row(NHS_Number="9000000009", Date_of_Birth="31/02/1940"),
                   gp_row(NHS_Number="9000000009"))
    results = run("gp", text, "palliative_register.csv")
    assert [type(r).__name__ for r in results] == [
        "MappedRecord", "Rejection", "Rejection", "MappedRecord"]
    digit, date = rejected(results)
    assert digit.field == "NHS Number"
    for part in ("gp", "palliative_register.csv", "line 3", "NHS Number", "8493407225",
                 "check digit"):
        assert part in digit.reason
    assert date.field == "Date of Birth"
    for part in ("gp", "palliative_register.csv", "line 4", "Date of Birth", "31/02/1940",
                 "not a real date"):
        assert part in date.reason
    assert date.source.raw.startswith("9000000009,WHITE")


def test_every_problem_in_a_row_is_named() -> None:
    [bad] = run("gp", gp_file(gp_row(NHS_Number="12345", DNACPR_Date="32/01/2026")))
    assert bad.field == "NHS Number, DNACPR Date"
    assert "10-digit" in bad.reason and "32/01/2026" in bad.reason


def test_dnacpr_n_records_no_decision_and_retracts_an_earlier_one() -> None:
    record = only(run("gp", gp_file(gp_row(DNACPR="N", DNACPR_Date=""))))
    assert by_code(record, "304251008") == []
    assert any(k.system.endswith("/gp/cpr-decision") and k.value == "9434765919"
               for k in record.retracted)


def test_an_undated_dnacpr_is_kept_with_a_warning() -> None:
    record = only(run("gp", gp_file(gp_row(DNACPR_Date=""))))
    [cpr] = by_code(record, "304251008")
    assert "effectiveDateTime" not in cpr
    assert any("effectiveDateTime is empty (DNACPR Date)" in w for w in record.warnings)


def test_a_decision_dated_after_today_is_rejected_not_made_the_newest() -> None:
    [bad] = run("gp", gp_file(gp_row(DNACPR_Date="05/03/2062")))
    assert isinstance(bad, Rejection)
    assert bad.field == "DNACPR Date"
    assert "2062-03-05" in bad.reason and "after today" in bad.reason
    # today itself is not the future
    today = TODAY.strftime("%d/%m/%Y")
    [cpr] = by_code(only(run("gp", gp_file(gp_row(DNACPR_Date=today)))), "304251008")
    assert cpr["effectiveDateTime"] == TODAY.isoformat()


def test_an_unknown_dnacpr_value_is_never_guessed() -> None:
    [bad] = run("gp", gp_file(gp_row(DNACPR="Yes")))
    assert bad.field == "DNACPR"
    assert "gp-dnacpr" in bad.reason


def test_declined_and_not_discussed_record_no_preferred_place() -> None:
    declined, not_discussed = mapped(run("gp", gp_file(
        gp_row(Preferred_Place_of_Death="Declined to discuss"),
        gp_row(Preferred_Place_of_Death="Not discussed"))))
    for record in (declined, not_discussed):
        assert by_code(record, "preferred-place-of-death") == []
    assert by_code(declined, "766391000000108")[0]["effectiveDateTime"] == "2025-12-25"
    assert by_code(not_discussed, "766391000000108") == []


def test_an_unknown_local_place_term_rejects_the_row_naming_field_and_term() -> None:
    # A preferred place must be coded (the profile's required binding): text alone was
    # mapped, then refused by the profile with a reason naming neither the column nor
    # the term. The analyst is told which term to add to which ConceptMap.
    [bad] = run("gp", gp_file(gp_row(Preferred_Place_of_Death="Nursing Home")))
    assert isinstance(bad, Rejection) and bad.field == "Preferred Place of Death", bad
    assert "'Nursing Home'" in bad.reason and "gp-place" in bad.reason


def test_death_recorded_by_the_gp() -> None:
    record = only(run("gp", gp_file(gp_row(Date_of_Death="21/07/2026", Place_of_Death="Home"))))
    assert record.patient["deceasedDateTime"] == "2026-07-21"
    [place] = by_code(record, "place-of-death")
    assert place["valueCodeableConcept"]["coding"][0]["code"] == "21"
    assert of_type(record, "CarePlan")[0]["status"] == "completed"


def test_a_header_without_a_mapped_column_rejects_each_row() -> None:
    header = GP_HEADER.replace("DNACPR Date", "DNACPR When")
    results = run("gp", header + "\n" + gp_row() + "\n" + gp_row() + "\n")
    # the header line itself (kept, in case it is a record), then each row under it
    assert [r.field for r in rejected(results)] == ["header", "DNACPR Date", "DNACPR Date"]
    assert all("the header on line 1 has no column 'DNACPR Date'" in r.reason
               for r in results)


def test_a_row_with_the_wrong_number_of_fields() -> None:
    results = run("gp", gp_file(gp_row().replace("Dr Clarke", "Dr Clarke, Jones"), gp_row()))
    assert rejected(results)[0].field == "row"
    assert "17" in rejected(results)[0].reason
    assert len(mapped(results)) == 1


def test_header_names_match_ignoring_case_and_spaces() -> None:
    header = GP_HEADER.replace("NHS Number", " nhs  number ")
    assert only(run("gp", header + "\n" + gp_row() + "\n")).person.nhs_number == "9434765919"


def test_council_row_without_nhs_number_is_known_by_person_id() -> None:
    row = "SC1,Ms,Patricia,White,1961-11-03,dy1 4dx,,Home care,2025-07-08,2026-01-20,Oak,Jo"
    record = only(run("socialcare", SC_HEADER + "\n" + row + "\n", "services.csv"))
    assert record.person.nhs_number is None
    assert record.person.local_id == "SC1"
    assert (record.person.family, record.person.given, record.person.birth_date,
            record.person.postcode) == ("White", "Patricia", "1961-11-03", "DY1 4DX")
    [plan] = of_type(record, "CarePlan")
    assert plan["status"] == "completed"  # ended before TODAY
    assert plan["category"][0]["coding"][0]["code"] == "A01"


def test_a_postcode_field_holding_no_postcode_is_kept_as_sent_and_matches_no_one() -> None:
    """"NFA" (no fixed abode) is shared by many people: it must not be a matching key,
    nor be reshaped into something that looks like a postcode."""
    row = "SC1,Ms,Patricia,White,1961-11-03,NFA,,Home care,2025-07-08,2026-01-20,Oak,Jo"
    record = only(run("socialcare", SC_HEADER + "\n" + row + "\n", "services.csv"))
    assert record.person.postcode is None
    assert record.patient["address"][0]["postalCode"] == "NFA"


def test_council_service_row_key_is_stable_across_date_formats_and_updates() -> None:
    rows = ["SC1,Mr,Ken,White,1927-10-11,B63 5XG,,Reablement,2026-07-29,,Oak,Jo",
            "SC1,Mr,Ken,White,11/10/1927,B63 5XG,,Reablement,29/07/2026,30/12/2026,Oak,Jo"]
    first, second = mapped(run("socialcare", "\n".join([SC_HEADER, *rows]) + "\n"))
    assert first.keys == second.keys
    assert of_type(first, "CarePlan")[0]["status"] == "active"
    assert of_type(second, "CarePlan")[0]["status"] == "active"  # ends after TODAY
    assert "category" not in of_type(first, "CarePlan")[0]  # reablement: no setting code


def test_a_blank_dnacpr_rejects_the_row_and_retracts_nothing() -> None:
    # A truncated export or an unfilled cell is not "no decision": retracting on it would
    # delete the partner's DNACPR unseen. The row is kept for review instead.
    for blank in ("", "  "):
        [bad] = run("gp", gp_file(gp_row(DNACPR=blank)))
        assert isinstance(bad, Rejection) and bad.field == "DNACPR", bad
        assert "is empty" in bad.reason and "never reads an empty value" in bad.reason


def test_a_column_named_twice_is_read_only_when_its_copies_agree() -> None:
    # an extract that repeats DNACPR (Y in the first copy, N in the second) says two
    # things; reading the first would record a decision the second denies
    header = GP_HEADER + ",DNACPR"
    agreeing = gp_row() + ",Y"
    differing = gp_row() + ",N"
    results = run("gp", "\r\n".join([header, agreeing, differing]) + "\r\n", "register.csv")
    ok, bad = results
    assert not isinstance(ok, Rejection)
    [cpr] = by_code(ok, "304251008")
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    assert isinstance(bad, Rejection) and bad.field == "DNACPR", bad
    assert bad.source.position == "line 3"
    assert "names column 'DNACPR' 2 times" in bad.reason and "'Y', 'N'" in bad.reason
