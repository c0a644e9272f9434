Profile: SCRRelatedPerson
Parent: $UKCore-RelatedPerson
Id: SCR-RelatedPerson
Title: "Shared care record related person"
Description: "Someone to involve or call: the holder of a Lasting Power of Attorney (relationship v3-RoleCode HPOWATT), an emergency contact or next of kin. The relationship is required, and a name or a way to contact them."
* ^status = #draft
* obeys scr-rp-1
* patient only Reference(SCRPatient)
* relationship 1..*
