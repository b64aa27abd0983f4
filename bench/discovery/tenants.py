"""Generated tenants shaped like Finland's education providers, for the city search benchmark.

``generate(300, 3000)`` gives 300 municipalities with 3,000 schools between them, sized as
the real ones are: a few large cities with well over a hundred schools each and a long tail
of small municipalities with a handful (weights ``rank ** -0.7`` above a floor of two).  Names
are built the way Finnish place and school names are (compounds such as *Kivijärvi*,
genitives such as *Kivijärven koulu*, ``ä`` and ``ö`` included); a sixth of the municipalities
are bilingual, with Swedish names of their own (*Kivisjö*) and some Swedish-language schools;
common school names (*Keskuskoulu*, *Kirkonkylän koulu*) recur in many municipalities, as
they do.  Municipality codes are distinct three-digit strings (repeating only beyond 995
tenants), school codes distinct five-digit ones, OIDs of the education-provider form.  Every
municipality has one to three SAML IdPs (a third have more than one, so the city page links
to their method pages).

Deterministic for a seed: the same documents on every machine.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

FIRST = ["Kauha", "Lappeen", "Ylö", "Kuusa", "Pori", "Rauta", "Sotka", "Mänty", "Kivi", "Pihla", "Haapa", "Koivu",
         "Lohi", "Kala", "Sysmä", "Vesi", "Niini", "Halli", "Hirvi", "Karhu", "Kettu", "Ilves", "Kotka", "Haukka",
         "Lumi", "Jää", "Tuuli", "Kuu", "Tähti", "Meri", "Pitkä", "Lehti", "Pyhä", "Iso", "Pikku", "Raja", "Suoma",
         "Kärsä", "Ähtä", "Öljy", "Hämeen", "Savon", "Kangas", "Paimen", "Laukaa", "Keuru", "Ruove", "Viita",
         "Muura", "Nurmi", "Orima", "Pälkä", "Sonka", "Tervo", "Uura", "Vaala", "Ylivie", "Aura", "Eura", "Ikaa"]
SECOND = ["joki", "järvi", "lahti", "salo", "koski", "niemi", "vaara", "harju", "mäki", "vesi", "kylä", "nen",
          "linna", "ranta", "saari", "lampi", "virta", "selkä", "la", "vuori", "suo", "puro"]
#: Swedish for the second part, for the bilingual municipalities' Swedish names.
SWEDISH = {"joki": "å", "järvi": "sjö", "lahti": "vik", "salo": "ö", "koski": "fors", "niemi": "näs",
           "vaara": "berg", "harju": "ås", "mäki": "backa", "vesi": "vatten", "kylä": "by", "nen": "näs",
           "linna": "borg", "ranta": "strand", "saari": "holm", "lampi": "träsk", "virta": "ström",
           "selkä": "rygg", "la": "böle", "vuori": "berg", "suo": "mossa", "puro": "bäck"}
GENITIVE = {"joki": "joen", "järvi": "järven", "lahti": "lahden", "koski": "kosken", "niemi": "niemen",
            "mäki": "mäen", "vesi": "veden", "saari": "saaren", "lampi": "lammen", "selkä": "selän",
            "nen": "sen", "vuori": "vuoren"}
DISTRICT_PREFIX = ["", "", "", "Keski-", "Ala-", "Ylä-", "Itä-", "Länsi-", "Pohjois-", "Etelä-", "Vanha-"]
DISTRICT = ["Koivikko", "Kuusikko", "Männistö", "Hakametsä", "Kaleva", "Tammela", "Pispala", "Leinola",
            "Rajakylä", "Kaukajärvi", "Härmälä", "Peltola", "Myllymäki", "Rantakylä", "Kirkkoharju", "Asema",
            "Mäntylä", "Hiekkaharju", "Jokiniemi", "Tikkurila", "Hakunila", "Korso", "Päiväkumpu", "Sammonlahti",
            "Niittykumpu", "Lintuvaara", "Olari", "Kilo", "Nöykkiö", "Kivistö", "Ruusutorppa", "Hiidenkivi",
            "Satulinna", "Pohjankuru", "Väinölä", "Metsola", "Honkala", "Vaahtera", "Pihlajisto", "Kotiranta"]
PEOPLE = ["Aleksis Kiven", "Minna Canthin", "Sibeliuksen", "Topeliuksen", "Runebergin", "Elias Lönnrotin",
          "Juhani Ahon", "Eino Leinon", "Maila Talvion", "Mikael Agricolan"]
COMMON = ["Keskuskoulu", "Kirkonkylän koulu", "Asemanseudun koulu", "Yhteiskoulu", "Keskustan koulu"]
KINDS = [("koulu", 50), ("alakoulu", 15), ("yhtenäiskoulu", 10), ("lukio", 8), ("yläkoulu", 8), ("ala-aste", 5),
         ("koulukeskus", 4)]


def school_counts(tenants: int, schools: int) -> list[int]:
    """Schools per municipality, largest first: ``2 + share of rank ** -0.7``, summing to ``schools``."""
    floor = min(2, schools // tenants)
    weights = [(rank + 1) ** -0.7 for rank in range(tenants)]
    spare = schools - floor * tenants
    counts = [floor + int(spare * w / sum(weights)) for w in weights]
    for i in range(schools - sum(counts)):          # what rounding down left goes to the largest
        counts[i % tenants] += 1
    return counts


def _genitive(name: str) -> str:
    lower = name.lower()
    for ending, genitive in GENITIVE.items():
        if lower.endswith(ending):
            return name[: len(name) - len(ending)] + genitive
    return name + "n"


def _place_names(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """``count`` distinct ``(Finnish, second part)`` municipality names."""
    pairs = [(first, second) for first in FIRST for second in SECOND]
    rng.shuffle(pairs)
    names, seen = [], set()
    for first, second in pairs:
        name = first + second
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append((name, second))
        if len(names) == count:
            return names
    raise ValueError(f"at most {len(names)} distinct municipality names")


def _school_name(rng: random.Random, city: str) -> str:
    roll = rng.random()
    if roll < 0.12:
        return rng.choice(COMMON) if rng.random() < 0.7 else f"{_genitive(city)} lukio"
    if roll < 0.18:
        return f"{rng.choice(PEOPLE)} koulu"
    district = rng.choice(DISTRICT_PREFIX) + rng.choice(DISTRICT)
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    return f"{_genitive(district)} {kind}"


def generate(tenants: int = 300, schools: int = 3000, *, seed: int = 11) -> list[dict[str, Any]]:
    """Tenant documents (as in ``tenants/*.yaml``, without the IdPs' metadata files)."""
    rng = random.Random(seed)
    counts = school_counts(tenants, schools)
    places = _place_names(rng, tenants)
    # Three digits: beyond 995 providers (joint authorities, private ones) the codes repeat.
    codes = rng.sample(range(5, 1000), min(tenants, 995))
    codes += [codes[i % len(codes)] for i in range(tenants - len(codes))]
    school_codes = iter(rng.sample(range(1000, 100_000), schools))
    documents = []
    for t, ((fi, second), count) in enumerate(zip(places, counts, strict=True)):
        bilingual = t % 6 == 3
        sv = fi[: len(fi) - len(second)] + SWEDISH[second] if bilingual else fi
        city = t < 60
        provider = {
            "fi": f"{_genitive(fi)} {'kaupunki' if city else 'kunta'}",
            "sv": f"{sv} {'stad' if city else 'kommun'}",
            "en": f"{'City' if city else 'Municipality'} of {fi}",
        }
        tenant_id = f"m{codes[t]:03d}" if t < 995 else f"m{codes[t]:03d}-{t}"
        school_docs, taken = [], set()
        for s in range(count):
            name = _school_name(rng, fi)
            while name in taken:                           # names are unique within a municipality
                name = _school_name(rng, fi) if rng.random() < 0.5 else f"{name} {s}"
            taken.add(name)
            swedish = bilingual and rng.random() < 0.25
            names = {"fi": name, "sv": name, "en": name}
            if swedish:
                names = {"fi": name, "sv": f"{rng.choice(DISTRICT)} skola", "en": name}
            code = next(school_codes)
            school_docs.append({"code": f"{code:05d}", "oid": f"1.2.246.562.10.{50_000_000_000 + code:011d}",
                                "names": names})
        idps = 1 if t % 3 else (2 if t % 9 else 3)
        documents.append({
            "id": tenant_id,
            "names": {"fi": fi, "sv": sv, "en": fi},
            "municipality_code": f"{codes[t]:03d}",
            "domains": [f"{tenant_id}.bench.example"],
            "education_provider": {"oid": f"1.2.246.562.10.{40_000_000_000 + codes[t]:011d}", "names": provider},
            "schools": school_docs,
            "identity_providers": [
                {"id": f"idp{k}", "type": "saml",
                 "names": {"fi": f"Tunnukset {k + 1}", "sv": f"Konto {k + 1}", "en": f"Account {k + 1}"},
                 "metadata": {"file": f"gen/{tenant_id}-idp{k}.xml"}, "mapping": {"preset": "mpassid-saml"}}
                for k in range(idps)],
        })
    return documents


def write(root: Path, documents: list[dict[str, Any]], *, metadata_template: str, template_base: str) -> None:
    """Write ``root/tenants/<id>.yaml`` and each IdP's metadata: the template with ``template_base``
    (its entity id's and endpoints' common beginning) made the IdP's own."""
    import yaml

    (root / "tenants").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / "gen").mkdir(parents=True, exist_ok=True)
    for document in documents:
        for idp in document["identity_providers"]:
            own = f"{template_base.rsplit('/', 1)[0]}/{document['id']}-{idp['id']}"
            (root / "metadata" / idp["metadata"]["file"]).write_text(metadata_template.replace(template_base, own))
        (root / "tenants" / f"{document['id']}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
