"""What a demo service greets a person with, from the claims it has (broker.demo.greeting)."""

from __future__ import annotations

from broker.demo.greeting import greeting

SCHOOL = {"code": "98531", "oid": "1.2.246.562.10.98530000001",
          "names": {"fi": "Hirvensalon demokoulu", "sv": "Hirvensalo demoskola", "en": "Hirvensalo Demo School"}}
OTHER = {"code": "98532", "oid": "1.2.246.562.10.98530000002", "names": {"fi": "Runosmäen demokoulu"}}
SUB = "e93c9ec0d1b2a3f4e5d6c7b8a9f0e1d2"


def test_a_name_comes_first():
    assert greeting({"sub": SUB, "name": "Aino Virtanen", "roles": ["learner"]}) == "Signed in as Aino Virtanen"
    assert greeting({"sub": SUB, "given_name": "Aino", "family_name": "Virtanen"}) == "Signed in as Aino Virtanen"


def test_without_a_name_the_roles_and_schools():
    assert greeting({"sub": SUB, "roles": ["learner"], "schools": [SCHOOL]}) == \
        "Signed in as a learner at Hirvensalo Demo School"
    assert greeting({"sub": SUB, "roles": ["teacher", "principal"], "schools": [SCHOOL, OTHER]}) == \
        "Signed in as a teacher and principal at Hirvensalo Demo School and Runosmäen demokoulu"
    assert greeting({"sub": SUB, "roles": ["staff"]}) == "Signed in as a staff member"
    assert greeting({"sub": SUB, "schools": [{"code": "12345", "names": {}}]}) == "Signed in at school 12345"


def test_the_pairwise_id_only_when_there_is_nothing_else():
    assert greeting({"sub": SUB}) == "Signed in (pairwise id e93c9ec0…)"
    assert greeting({"sub": SUB, "roles": "learner", "schools": [42]}) == "Signed in (pairwise id e93c9ec0…)"
