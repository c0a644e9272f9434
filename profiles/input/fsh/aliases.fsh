// Code systems, identifier systems and the UK Core profiles the gateway's profiles build on.
Alias: $sct = http://snomed.info/sct
Alias: $nhs-number = https://fhir.nhs.uk/Id/nhs-number
Alias: $ods = https://fhir.nhs.uk/Id/ods-organization-code
Alias: $consentscope = http://terminology.hl7.org/CodeSystem/consentscope
Alias: $consentcategory = http://terminology.hl7.org/CodeSystem/consentcategorycodes
Alias: $v3-NullFlavor = http://terminology.hl7.org/CodeSystem/v3-NullFlavor
Alias: $nhs-verification-england = https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland
Alias: $nhs-verification-wales = https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusWales

Alias: $UKCore-Patient = https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient
Alias: $UKCore-Encounter = https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter
Alias: $UKCore-CarePlan = https://fhir.hl7.org.uk/StructureDefinition/UKCore-CarePlan
Alias: $UKCore-Observation = https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation
Alias: $UKCore-Consent = https://fhir.hl7.org.uk/StructureDefinition/UKCore-Consent
Alias: $UKCore-RelatedPerson = https://fhir.hl7.org.uk/StructureDefinition/UKCore-RelatedPerson
Alias: $UKCore-Provenance = https://fhir.hl7.org.uk/StructureDefinition/UKCore-Provenance
Alias: $UKCore-AuditEvent = https://fhir.hl7.org.uk/StructureDefinition/UKCore-AuditEvent
