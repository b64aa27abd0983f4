"""Messages in Finnish, Swedish and English, and choosing among them.

Every text a person sees comes from :data:`MESSAGES` by key, so a page is never
half-translated; a missing key falls back to English, then to the key itself.
"""

from __future__ import annotations

LANGUAGES = ("fi", "sv", "en")
DEFAULT_LANGUAGE = "fi"

MESSAGES: dict[str, dict[str, str]] = {
    # Error pages
    # Headings (broker.errors.HEADINGS: which message goes under which)
    "error.title": {"fi": "Kirjautuminen ei onnistunut", "sv": "Inloggningen misslyckades",
                    "en": "Sign-in did not succeed"},
    "error.title.not_started": {"fi": "Kirjautumista ei voitu aloittaa", "sv": "Inloggningen kunde inte påbörjas",
                                "en": "Sign-in could not start"},
    "error.title.expired": {"fi": "Kirjautuminen vanheni", "sv": "Inloggningen gick ut", "en": "The sign-in expired"},
    "error.title.not_found": {"fi": "Sivua ei ole olemassa", "sv": "Sidan finns inte",
                              "en": "This page does not exist"},
    "error.title.unknown_tenant": {"fi": "Emme tunne tätä kuntaa", "sv": "Vi känner inte till den kommunen",
                                   "en": "We don't know that city"},
    "error.title.logout": {"fi": "Uloskirjautuminen ei onnistunut", "sv": "Utloggningen misslyckades",
                           "en": "Signing out did not succeed"},
    "error.title.busy": {"fi": "Liian monta kirjautumista juuri nyt", "sv": "För många inloggningar just nu",
                         "en": "Too many sign-ins right now"},
    "error.title.generic": {"fi": "Jokin meni vikaan", "sv": "Något gick fel", "en": "Something went wrong"},
    "error.correlation": {"fi": "Virhetunniste", "sv": "Felkod", "en": "Error reference"},
    "error.help": {
        "fi": "Jos ongelma toistuu, kerro virhetunniste koulusi tukihenkilölle.",
        "sv": "Om problemet upprepas, ge felkoden till din skolas stödperson.",
        "en": "If this keeps happening, give the error reference to your school's support person.",
    },
    "error.back": {"fi": "Aloita alusta", "sv": "Börja om", "en": "Start again"},
    "error.home": {"fi": "DigiOne-kirjautumisen etusivulle", "sv": "Till DigiOne-inloggningens startsida",
                   "en": "To the DigiOne Login front page"},
    "error.unknown_idp": {
        "fi": "Valittua kirjautumistapaa ei löydy.",
        "sv": "Det valda inloggningssättet finns inte.",
        "en": "The chosen sign-in method does not exist.",
    },
    "error.unknown_client": {
        "fi": "Palvelua, josta tulit, ei ole rekisteröity.",
        "sv": "Tjänsten du kom från är inte registrerad.",
        "en": "The service you came from is not registered.",
    },
    "error.invalid_redirect_uri": {
        "fi": "Palvelun paluuosoitetta ei ole rekisteröity, joten sinua ei ohjata sinne.",
        "sv": "Tjänstens returadress är inte registrerad, så du skickas inte dit.",
        "en": "The service's return address is not registered, so you are not sent there.",
    },
    "error.invalid_request": {
        "fi": "Palvelun kirjautumispyyntö oli virheellinen.",
        "sv": "Tjänstens inloggningsbegäran var felaktig.",
        "en": "The service's sign-in request was not valid.",
    },
    "error.invalid_response": {
        "fi": "Kirjautumisvastausta ei voitu hyväksyä.",
        "sv": "Inloggningssvaret kunde inte godkännas.",
        "en": "The sign-in response could not be accepted.",
    },
    "error.replayed_response": {
        "fi": "Tämä kirjautumisvastaus on jo käytetty.",
        "sv": "Detta inloggningssvar har redan använts.",
        "en": "This sign-in response has already been used.",
    },
    "error.expired_flow": {
        "fi": "Tämä kirjautuminen ei ole enää kesken: se kesti liian kauan, tai se aloitettiin toisessa selaimessa "
              "tai välilehdessä. Aloita uudelleen palvelusta, johon olit kirjautumassa.",
        "sv": "Den här inloggningen pågår inte längre: den tog för lång tid, eller den påbörjades i en annan "
              "webbläsare eller flik. Börja om från tjänsten du loggade in i.",
        "en": "This sign-in is no longer in progress: it took too long, or it was started in another browser or "
              "tab. Start again from the service you were signing in to.",
    },
    "error.idp_error": {
        "fi": "Kotikuntasi kirjautumispalvelu palautti virheen.",
        "sv": "Din hemkommuns inloggningstjänst returnerade ett fel.",
        "en": "Your city's sign-in service returned an error.",
    },
    "error.no_user_id": {
        "fi": "Kirjautumispalvelu ei kertonut käyttäjätunnustasi.",
        "sv": "Inloggningstjänsten uppgav inte ditt användar-id.",
        "en": "The sign-in service did not give your user id.",
    },
    "error.not_found": {
        "fi": "Osoite voi olla kirjoitettu väärin, tai sivu on siirtynyt.",
        "sv": "Adressen kan vara felskriven, eller så har sidan flyttats.",
        "en": "The address may be mistyped, or the page may have moved.",
    },
    "error.unknown_tenant": {
        "fi": "Osoitteessa mainittua kuntaa ei ole DigiOne-kirjautumisessa.",
        "sv": "Kommunen som adressen nämner finns inte i DigiOne-inloggningen.",
        "en": "The address names a city that DigiOne Login does not have.",
    },
    "error.invalid_logout_request": {
        "fi": "Uloskirjautumispyyntö oli virheellinen.",
        "sv": "Utloggningsbegäran var felaktig.",
        "en": "The sign-out request was not valid.",
    },
    "error.method_not_allowed": {
        "fi": "Tätä osoitetta ei voi avata näin. Palaa palveluun ja yritä uudelleen.",
        "sv": "Den här adressen kan inte öppnas så här. Gå tillbaka till tjänsten och försök igen.",
        "en": "This address cannot be opened this way. Go back to the service and try again.",
    },
    # The guard refused what the browser sent (unreadable path, body too large or cut short)
    "error.bad_request": {
        "fi": "Selaimesi lähettämää pyyntöä ei voitu lukea. Yritä uudelleen.",
        "sv": "Begäran som din webbläsare skickade kunde inte läsas. Försök igen.",
        "en": "The request your browser sent could not be read. Try again.",
    },
    "error.internal": {
        "fi": "Tapahtui odottamaton virhe.", "sv": "Ett oväntat fel inträffade.", "en": "An unexpected error occurred.",
    },
    # Too many sign-ins started from one network (broker.ratelimit): wait, then try again
    "error.rate_limited": {
        "fi": "Verkostasi aloitetaan juuri nyt hyvin monta kirjautumista. Odota hetki ja yritä uudelleen.",
        "sv": "Just nu påbörjas väldigt många inloggningar från ditt nätverk. Vänta en stund och försök igen.",
        "en": "Very many sign-ins are being started from your network right now. Wait a moment and try again.",
    },
    # A service the person's school has not enabled (tenant file: allowed_services)
    "access.title": {"fi": "Koulusi ei ole ottanut palvelua käyttöön", "sv": "Din skola har inte tagit tjänsten i bruk",
                     "en": "Your school has not enabled this service"},
    "access.not_enabled": {
        "fi": "Koulusi ei ole ottanut käyttöön palvelua {service}.",
        "sv": "Din skola har inte tagit i bruk tjänsten {service}.",
        "en": "Your school has not enabled {service}.",
    },
    "access.help": {
        "fi": "Olet kirjautunut sisään, ja koulusi muut palvelut toimivat. Jos tarvitset tätä palvelua, kysy "
              "opettajaltasi tai koulusi tukihenkilöltä.",
        "sv": "Du är inloggad, och skolans andra tjänster fungerar. Om du behöver den här tjänsten, fråga din lärare "
              "eller skolans stödperson.",
        "en": "You are signed in, and your school's other services work. If you need this service, ask your teacher "
              "or your school's support person.",
    },
    "access.back": {"fi": "Palaa palveluun", "sv": "Tillbaka till tjänsten", "en": "Back to the service"},
    # Discovery
    "disco.title": {"fi": "Valitse kotikuntasi", "sv": "Välj din hemkommun", "en": "Choose your city"},
    "disco.search": {"fi": "Hae kuntaa tai koulua", "sv": "Sök kommun eller skola", "en": "Search city or school"},
    "disco.method": {"fi": "Valitse kirjautumistapa", "sv": "Välj inloggningssätt", "en": "Choose how to sign in"},
    "disco.remembered": {"fi": "Edellinen valintasi", "sv": "Ditt tidigare val", "en": "Your previous choice"},
    "disco.change": {"fi": "Vaihda kuntaa", "sv": "Byt kommun", "en": "Change city"},
    "disco.continue": {"fi": "Jatka", "sv": "Fortsätt", "en": "Continue"},
    "disco.language": {"fi": "Kieli", "sv": "Språk", "en": "Language"},
    "disco.service": {"fi": "Kirjaudut palveluun", "sv": "Du loggar in i tjänsten", "en": "You are signing in to"},
    "disco.search_hint": {"fi": "Kirjoita kunnan, koulun tai koulutuksen järjestäjän nimi tai koodi.",
                          "sv": "Skriv namnet eller koden på kommunen, skolan eller utbildningsanordnaren.",
                          "en": "Type the name or code of your city, school or education provider."},
    "disco.search_button": {"fi": "Hae", "sv": "Sök", "en": "Search"},
    "disco.results": {"fi": "Hakutulokset", "sv": "Sökresultat", "en": "Search results"},
    "disco.count.none": {"fi": "Ei osumia", "sv": "Inga träffar", "en": "No matches"},
    "disco.count.one": {"fi": "1 osuma", "sv": "1 träff", "en": "1 match"},
    "disco.count.many": {"fi": "{count} osumaa", "sv": "{count} träffar", "en": "{count} matches"},
    "disco.count.more": {"fi": "{count} parasta osumaa. Tarkenna hakua, jos omaasi ei näy.",
                         "sv": "De {count} bästa träffarna. Skriv mer om din inte syns.",
                         "en": "The best {count} matches. Type more if yours is not shown."},
    "disco.no_matches": {"fi": "Haulla ”{query}” ei löytynyt kuntaa eikä koulua.",
                         "sv": "Ingen kommun eller skola hittades med ”{query}”.",
                         "en": "No city or school matches “{query}”."},
    "disco.no_matches_help": {
        "fi": "Tarkista kirjoitusasu tai hae kunnan nimellä. Jos et löydä kirjautumistasi, kysy opettajalta tai "
              "koulusi tukihenkilöltä.",
        "sv": "Kontrollera stavningen eller sök med kommunens namn. Om du inte hittar din inloggning, fråga din "
              "lärare eller skolans stödperson.",
        "en": "Check the spelling or search by your city's name. If you cannot find your sign-in, ask your teacher "
              "or your school's support person.",
    },
    "disco.help_link": {"fi": "Ohjeet ja apu", "sv": "Anvisningar och hjälp", "en": "Instructions and help"},
    "disco.all": {"fi": "Kaikki kunnat ({count})", "sv": "Alla kommuner ({count})", "en": "All cities ({count})"},
    "disco.cities": {"fi": "Kunnat", "sv": "Kommuner", "en": "Cities"},
    "disco.school": {"fi": "Koulu", "sv": "Skola", "en": "School"},
    "disco.kind.city": {"fi": "Kunta", "sv": "Kommun", "en": "City"},
    "disco.kind.municipality_code": {"fi": "Kuntanumero", "sv": "Kommunnummer", "en": "Municipality code"},
    "disco.kind.provider": {"fi": "Koulutuksen järjestäjä", "sv": "Utbildningsanordnare", "en": "Education provider"},
    "disco.kind.school": {"fi": "Koulu", "sv": "Skola", "en": "School"},
    "disco.kind.school_code": {"fi": "Koulukoodi", "sv": "Skolkod", "en": "School code"},
    "disco.back": {"fi": "Takaisin kirjautumiseen", "sv": "Tillbaka till inloggningen", "en": "Back to signing in"},
    "site.help": {"fi": "Ohjeet", "sv": "Hjälp", "en": "Help"},
    "site.privacy": {"fi": "Tietosuojaseloste", "sv": "Dataskyddsbeskrivning", "en": "Privacy notice"},
    "site.accessibility": {"fi": "Saavutettavuusseloste", "sv": "Tillgänglighetsutlåtande",
                           "en": "Accessibility statement"},
    "site.links": {"fi": "Tietoa palvelusta", "sv": "Om tjänsten", "en": "About the service"},
    # Signing out
    "logout.title": {"fi": "Uloskirjautuminen", "sv": "Utloggning", "en": "Signing out"},
    "logout.done": {"fi": "Olet kirjautunut ulos.", "sv": "Du har loggats ut.", "en": "You have signed out."},
    "logout.services": {"fi": "Kirjauduit ulos näistä palveluista:", "sv": "Du loggades ut från de här tjänsterna:",
                        "en": "You were signed out of these services:"},
    "logout.nothing": {"fi": "Tällä selaimella ei ollut kirjautumista.", "sv": "Den här webbläsaren var inte inloggad.",
                       "en": "This browser was not signed in."},
    "logout.failed": {"fi": "Nämä palvelut eivät vahvistaneet uloskirjautumista",
                      "sv": "De här tjänsterna bekräftade inte utloggningen",
                      "en": "These services did not confirm the sign-out"},
    "logout.close": {"fi": "Sulje selain.", "sv": "Stäng webbläsaren.", "en": "Close the browser."},
    "logout.city_left": {
        "fi": "Kaupunkisi kirjautumispalvelu ({idp}) ei kirjaa ulos täältä, joten sinne voi yhä jäädä kirjautuminen.",
        "sv": "Din stads inloggningstjänst ({idp}) loggar inte ut härifrån, så du kan fortfarande vara inloggad där.",
        "en": "Your city's sign-in service ({idp}) cannot be signed out from here, so you may still be signed in "
              "there.",
    },
    "logout.continue": {"fi": "Jatka", "sv": "Fortsätt", "en": "Continue"},
    "logout.confirm.title": {"fi": "Kirjaudu ulos", "sv": "Logga ut", "en": "Sign out"},
    "logout.confirm.body": {"fi": "Haluatko kirjautua ulos kaikista palveluista?",
                            "sv": "Vill du logga ut från alla tjänster?",
                            "en": "Do you want to sign out of every service?"},
    "logout.confirm.button": {"fi": "Kirjaudu ulos kaikkialta", "sv": "Logga ut överallt",
                              "en": "Sign out everywhere"},
    # The broker's front page (nothing to sign in to here)
    # Test logins through a staged registry version (broker.registry.preview)
    "preview.title": {"fi": "Testikirjautuminen", "sv": "Testinloggning", "en": "Test sign-in"},
    "preview.started": {
        "fi": "Tämä selain käyttää nyt testattavaa versiota {version}. Avaa palvelu ja kirjaudu sisään "
              "testattavan kirjautumistavan kautta.",
        "sv": "Den här webbläsaren använder nu version {version} som testas. Öppna en tjänst och logga in "
              "med inloggningssättet som testas.",
        "en": "This browser now uses version {version}, which is being tested. Open a service and sign in "
              "through the sign-in method under test.",
    },
    "preview.stop": {"fi": "Lopeta testaus", "sv": "Sluta testa", "en": "Stop testing"},
    "preview.stopped": {"fi": "Testaus on lopetettu: tämä selain käyttää taas voimassa olevaa versiota.",
                        "sv": "Testet är avslutat: den här webbläsaren använder igen den gällande versionen.",
                        "en": "Testing has ended: this browser uses the live version again."},
    "preview.invalid": {"fi": "Testilinkki ei kelpaa tai se on vanhentunut. Pyydä uusi linkki hallinnasta.",
                        "sv": "Testlänken är ogiltig eller har gått ut. Be om en ny länk i administrationen.",
                        "en": "The test link is not valid or has expired. Get a new one from the admin console."},
    "preview.broken": {
        "fi": "Versiota {version} ei voi testata, koska se ei läpäise tarkistuksia. Korjaa muutos hallinnassa.",
        "sv": "Version {version} kan inte testas eftersom den inte klarar kontrollerna. Rätta ändringen i "
              "administrationen.",
        "en": "Version {version} cannot be tested because it does not pass the checks. Fix the change in the "
              "admin console.",
    },
    "preview.gone": {
        "fi": "Versiota {version} ei voi enää testata: se on otettu käyttöön tai hylätty.",
        "sv": "Version {version} kan inte längre testas: den har tagits i bruk eller förkastats.",
        "en": "Version {version} can no longer be tested: it has been activated or discarded.",
    },
    "home.title": {"fi": "DigiOne-kirjautuminen", "sv": "DigiOne-inloggning", "en": "DigiOne Login"},
    "home.body": {
        "fi": "Tämä on oppimispalvelujen yhteinen kirjautumispalvelu. Avaa palvelu, jota haluat käyttää: "
              "se ohjaa sinut tänne kirjautumaan.",
        "sv": "Det här är lärtjänsternas gemensamma inloggningstjänst. Öppna tjänsten du vill använda: "
              "den skickar dig hit för att logga in.",
        "en": "This is the shared sign-in service of the learning services. Open the service you want to use: "
              "it sends you here to sign in.",
    },
}


def negotiate(requested: str | None, accept_language: str | None = None) -> str:
    """Pick fi, sv or en from an explicit choice (``ui_locales``, ``lang``) or the header."""
    for candidate in (requested or "").replace(",", " ").split():
        tag = candidate.split("-")[0].lower()
        if tag in LANGUAGES:
            return tag
    weighted = []
    for part in (accept_language or "").split(","):
        piece = part.strip().split(";")
        tag = piece[0].split("-")[0].strip().lower()
        q = 1.0
        for param in piece[1:]:
            if param.strip().startswith("q="):
                try:
                    q = float(param.strip()[2:])
                except ValueError:
                    q = 0.0
        if tag in LANGUAGES:
            weighted.append((q, tag))
    if weighted:
        return max(weighted, key=lambda item: item[0])[1]
    return DEFAULT_LANGUAGE


def text(key: str, lang: str) -> str:
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry.get("en") or key
