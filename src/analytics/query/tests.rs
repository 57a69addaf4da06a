use super::*;

#[test]
fn times_parse_relative_absolute_and_by_date() {
    let now = 10 * 86_400_000;
    assert_eq!(parse_time("24h", now).unwrap(), 9 * 86_400_000);
    assert_eq!(parse_time("2d", now).unwrap(), 8 * 86_400_000);
    assert_eq!(parse_time("30m", now).unwrap(), now - 1_800_000);
    assert_eq!(parse_time("1970-01-02", now).unwrap(), 86_400_000);
    assert_eq!(parse_time("2026-11-23", now).unwrap(), 1_795_392_000_000);
    assert_eq!(parse_time("12345", now).unwrap(), 12345);
    assert_eq!(
        parse_time("2026-11-23T12:00:00Z", now).unwrap(),
        1_795_392_000_000 + 12 * 3_600_000
    );
    assert_eq!(parse_time("2024-02-29", now).unwrap(), 1_709_164_800_000);
    for bad in [
        "",
        "h",
        "5y",
        "2026-13-01",
        "-3h",
        "2024-02-31",
        "2023-02-29",
        "2026-04-31",
    ] {
        assert!(parse_time(bad, now).is_err(), "{bad}");
    }
    assert!(parse_group_by("tier,model,day").is_ok());
    assert!(parse_group_by("tier;drop table").is_err());
}
