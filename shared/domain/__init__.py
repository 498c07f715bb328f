"""The pure closed-loop domain: no Kafka, database or HTTP imports here."""
