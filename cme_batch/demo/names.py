"""Small built-in lists the demo school draws its fictional people and places from.

Everyone in the demo is made up: names are random pairings from these lists, streets and
towns are invented, postcodes use the unallocated-looking ``GL20 9Z?`` units, phone numbers
come from Ofcom's ranges reserved for drama (07700 900xxx, 01632 960xxx), and every email
address is at example.org or example.com (RFC 2606).
"""

from __future__ import annotations

GIRLS: tuple[str, ...] = (
    "Olivia", "Amelia", "Isla", "Ava", "Ivy", "Freya", "Lily", "Florence", "Mia", "Willow",
    "Rosie", "Sophia", "Isabella", "Grace", "Daisy", "Sienna", "Poppy", "Elsie", "Emily", "Ella",
    "Evelyn", "Phoebe", "Sofia", "Evie", "Charlotte", "Harper", "Matilda", "Aisha", "Zara", "Maya",
    "Amira", "Priya", "Hana", "Nadia", "Chloe", "Ruby", "Alice", "Layla", "Esme", "Maryam",
)

BOYS: tuple[str, ...] = (
    "Oliver", "George", "Noah", "Arthur", "Leo", "Muhammad", "Harry", "Oscar", "Archie", "Henry",
    "Theodore", "Freddie", "Jack", "Charlie", "Finley", "Alfie", "Jacob", "Thomas", "Isaac", "Lucas",
    "Tommy", "Edward", "Joshua", "Reuben", "Samuel", "Arlo", "Mason", "Elijah", "Yusuf", "Ibrahim",
    "Arjun", "Kai", "Mateo", "Ethan", "Rory", "Daniel", "Alexander", "Benjamin", "Louis", "Zain",
)

ADULT_WOMEN: tuple[str, ...] = (
    "Sarah", "Emma", "Laura", "Rebecca", "Hannah", "Gemma", "Kirsty", "Claire", "Natalie", "Amy",
    "Joanne", "Leanne", "Fatima", "Anita", "Agnieszka", "Chantelle", "Helen", "Rachel", "Samira", "Kelly",
)

ADULT_MEN: tuple[str, ...] = (
    "James", "Daniel", "Matthew", "Christopher", "Andrew", "Mark", "Paul", "Richard", "David", "Craig",
    "Stuart", "Imran", "Tomasz", "Wayne", "Lee", "Ravi", "Gareth", "Simon", "Adam", "Kieran",
)

SURNAMES: tuple[str, ...] = (
    "Ashworth", "Bramley", "Cartwright", "Dunmore", "Ellery", "Fairbairn", "Garside", "Hollins",
    "Ingleby", "Jessop", "Kettering", "Lockwood", "Marchbank", "Netherton", "Oakes", "Pennock",
    "Quarrie", "Radcliffe", "Stainton", "Thornbury", "Underhill", "Varley", "Whitcombe", "Yardley",
    "Ahmed", "Begum", "Chaudhry", "Das", "Hussain", "Kaur", "Malik", "Nowak", "Okafor", "Patel",
    "Rahman", "Singh", "Kowalski", "Mensah", "Adeyemi", "Novak", "Costa", "Fernandes", "O'Brien",
    "McAllister", "Price", "Evans", "Morgan", "Hughes", "Lloyd", "Bennett", "Fletcher", "Sharpe",
    "Tanner", "Webb", "Kemble", "Aldridge", "Birtles", "Coombes", "Drinkwater", "Eastwood",
)

MIDDLE_NAMES: tuple[str, ...] = (
    "Rose", "Mae", "Grace", "Jane", "Louise", "James", "John", "William", "Lee", "Alexander",
    "Marie", "Ann", "Joseph", "Ali", "Kumar",
)

#: Shortened names some pupils are known by (preferred forename).
SHORT_NAMES: dict[str, str] = {
    "Alexander": "Alex", "Benjamin": "Ben", "Theodore": "Teddy", "Samuel": "Sam", "Joshua": "Josh",
    "Isabella": "Bella", "Matilda": "Tilly", "Elijah": "Eli", "Thomas": "Tom", "Charlotte": "Lottie",
}

STREETS: tuple[str, ...] = (
    "Kingfisher Close", "Abbeymead Lane", "Quillet Road", "Severnside Walk", "Mythe View",
    "Lowerfield Crescent", "Bramblewick Way", "Tithebarn Row", "Cotswold Reach", "Harebell Drive",
    "Old Mill Yard", "Pennywort Gardens", "Swanbrook Road", "Larkspur Court", "Ferrymead Terrace",
    "Orchardine Avenue", "Willowbeck Street", "Chancel Meadow", "Foxglove Rise", "Wharfside Place",
)

TOWNS: tuple[str, ...] = ("Ashbury Vale", "Nether Severn", "Mythebrook")

#: Where pupils who left went (fictional schools).
OTHER_SCHOOLS: tuple[str, ...] = (
    "Nether Severn Church of England Primary School",
    "Ashbury Vale Community Primary School",
    "St Example's Catholic Primary School",
)

TRAVELLER_SITE = "Riverside Park (caravan site)"
