//! The input contract of `schemas/avro/ChangeEvent.avsc`, compiled into the binary so a
//! deployed slate needs no schema file for it. Entity records come from the catalogue
//! ([`crate::catalogue`]).

pub const CHANGE_EVENT: &str = include_str!("../../../schemas/avro/ChangeEvent.avsc");

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_change_event_parses() {
        apache_avro::Schema::parse_str(super::CHANGE_EVENT).unwrap();
    }
}
