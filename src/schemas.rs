//! The Avro contracts of `schemas/avro/`, compiled into the binary so a deployed slate needs no
//! schema files next to it. `schemas/avro/` stays the source of truth that schema owners edit.

use crate::event::EntityKind;

pub const CHANGE_EVENT: &str = include_str!("../schemas/avro/ChangeEvent.avsc");

/// The Avro schema (JSON text) of an entity's enriched record.
pub fn entity_schema(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Production => include_str!("../schemas/avro/Production.avsc"),
        EntityKind::Talent => include_str!("../schemas/avro/Talent.avsc"),
        EntityKind::Schedule => include_str!("../schemas/avro/Schedule.avsc"),
        EntityKind::Budget => include_str!("../schemas/avro/Budget.avsc"),
        EntityKind::CashFlow => include_str!("../schemas/avro/CashFlow.avsc"),
        EntityKind::Payment => include_str!("../schemas/avro/Payment.avsc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schemas_parse() {
        apache_avro::Schema::parse_str(CHANGE_EVENT).unwrap();
        for kind in EntityKind::ALL {
            let s = apache_avro::Schema::parse_str(entity_schema(kind)).unwrap();
            assert!(matches!(s, apache_avro::Schema::Record(r) if r.name.name() == kind.record_name()));
        }
    }
}
