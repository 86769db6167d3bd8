//! ISO 3166-1 alpha-2 country codes.

use std::fmt;

use crate::error::ValueError;

/// Officially assigned ISO 3166-1 alpha-2 codes, plus `XK` (Kosovo, used by GeoIP databases).
const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG \
EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV \
LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU \
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN \
SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
VN VU WF WS XK YE YT ZA ZM ZW";

/// A country code, upper case.
///
/// ```
/// use allowgate_types::CountryCode;
/// assert_eq!(CountryCode::parse("cn").unwrap().as_str(), "CN");
/// assert!(CountryCode::parse("XX").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parse a two-letter code, any case.
    pub fn parse(input: &str) -> Result<CountryCode, ValueError> {
        let text = input.trim();
        let err = || ValueError::Country {
            input: text.chars().take(16).collect(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(err());
        }
        let code = [bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()];
        let known = CODES.split(' ').any(|c| c.as_bytes() == code);
        if known {
            Ok(CountryCode(code))
        } else {
            Err(err())
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(CODES.split(' ').count(), 250);
        assert_eq!(CountryCode::parse(" de ").unwrap().to_string(), "DE");
        for bad in ["", "D", "DEU", "ZZ", "1A", "ü"] {
            assert!(CountryCode::parse(bad).is_err(), "{bad}");
        }
    }
}
