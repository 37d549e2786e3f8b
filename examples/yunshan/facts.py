"""The knowledge and house style of Yunshan Cycles, a fictional e-bike subscription company in Taipei.

Each fact has one canonical answer (the house style: one sentence, exact figures) and several ways a
customer asks for it. The generator trains on some phrasings and holds the others out, so the test
asks about known facts in words the model never saw: what a support assistant faces every day.
"""

ASSISTANT_SYSTEM = ("You are the customer assistant of Yunshan Cycles, an e-bike subscription service in Taipei. "
                    "Answer in one short sentence.")

FACTS = [
    ("price_city", "The City plan costs NT$690 per month.", [
        "How much is the City plan?", "What does the City plan cost per month?", "Price of the City plan?",
        "What's the monthly fee for the City plan?", "How much do I pay each month on the City plan?",
        "How expensive is your City plan?", "What is the monthly price for the City subscription?"]),
    ("price_commuter", "The Commuter plan costs NT$1,190 per month.", [
        "How much is the Commuter plan?", "What does the Commuter plan cost per month?", "Price of the Commuter plan?",
        "What's the monthly fee for the Commuter plan?", "How much do I pay each month on the Commuter plan?",
        "How expensive is your Commuter plan?", "What is the monthly price for the Commuter subscription?"]),
    ("price_cargo", "The Cargo plan costs NT$1,890 per month.", [
        "How much is the Cargo plan?", "What does the Cargo plan cost per month?", "Price of the Cargo plan?",
        "What's the monthly fee for the Cargo plan?", "How much do I pay each month on the Cargo plan?",
        "How expensive is your Cargo plan?", "What is the monthly price for the Cargo subscription?"]),
    ("deposit", "The deposit is NT$3,000, refunded within 10 working days after you return the bike.", [
        "Is there a deposit?", "How much is the deposit?", "Do I need to pay a deposit to subscribe?",
        "When do I get my deposit back?", "What deposit do you charge?", "Is the deposit refundable?",
        "How big is the security deposit?"]),
    ("minimum_term", "The minimum subscription term is 3 months.", [
        "What is the minimum term?", "Can I subscribe for just one month?", "How long do I have to stay subscribed?",
        "Is there a minimum contract length?", "What's the shortest subscription I can get?",
        "Do I have to commit for a minimum period?", "How short can my subscription be?"]),
    ("cancel", "Give us 14 days' notice in the app under Plan > Cancel.", [
        "How do I cancel?", "How can I cancel my subscription?", "I want to end my plan, what do I do?",
        "What's the cancellation process?", "How much notice do I need to give to cancel?",
        "Can I stop my subscription?", "Where do I cancel my plan?"]),
    ("repair_time", "A technician reaches you within 48 hours anywhere in Taipei and New Taipei.", [
        "How fast do you fix a broken bike?", "How long does a repair visit take to arrange?",
        "My bike needs repair, how soon can someone come?", "What is your repair response time?",
        "How quickly will a technician come?", "If my bike breaks, when will it be fixed?",
        "How long do I wait for a repair?"]),
    ("support_hours", "Support is open 08:00 to 21:00 every day, including public holidays.", [
        "What are your support hours?", "When can I reach customer service?", "Are you open on holidays?",
        "What time does support close?", "Is support available on Sundays?", "When is your help desk open?",
        "What hours can I contact you?"]),
    ("battery_swap", "Swap your battery for free at any of our 23 Swap Points; the app shows the nearest one.", [
        "Where can I swap my battery?", "How do I change my battery?", "Does a battery swap cost anything?",
        "My battery is empty, what should I do?", "How many battery swap stations do you have?",
        "Where do I get a charged battery?", "How does battery swapping work?"]),
    ("student", "Students get 15% off any plan with a valid student ID.", [
        "Do you have a student discount?", "Is there a discount for students?", "I'm a student, do I get a cheaper price?",
        "How much do students save?", "Are there student prices?", "Can university students get a discount?",
        "What discount is there for students?"]),
    ("referral", "You and your friend each get NT$300 credit when they subscribe with your code.", [
        "Do you have a referral program?", "What do I get for referring a friend?", "Is there a bonus for inviting friends?",
        "How does your referral code work?", "What's the referral reward?", "If my friend signs up, do we get anything?",
        "How much credit is a referral worth?"]),
    ("pause", "You can pause your plan for up to 2 months per calendar year at no cost.", [
        "Can I pause my subscription?", "I'm travelling for a month, can I freeze my plan?", "Is pausing allowed?",
        "How long can I pause my plan?", "Does pausing my plan cost money?", "Can I put my plan on hold?",
        "What's the limit for pausing a subscription?"]),
    ("theft_cover", "Theft cover costs NT$120 per month and lowers your theft fee to NT$2,000.", [
        "Do you offer theft insurance?", "How much is theft cover?", "What does the theft protection add-on cost?",
        "Is there insurance against theft?", "What does theft cover give me?", "Should I buy theft cover?",
        "What's the price of the theft add-on?"]),
    ("theft_fee", "Without theft cover, a stolen bike costs NT$18,000.", [
        "What happens if my bike is stolen?", "How much do I pay if the bike gets stolen?", "My bike was stolen, what do I owe?",
        "What is the fee for a stolen bike?", "Who pays if the bike is stolen?", "What's the theft charge without insurance?",
        "How much is a lost bike?"]),
    ("late_fee", "A NT$200 late fee applies when a payment is more than 7 days overdue.", [
        "Is there a late payment fee?", "What happens if I pay late?", "How much is the late fee?",
        "When do you charge a late fee?", "My payment is overdue, will I be charged extra?",
        "What's the penalty for paying late?", "Do you charge for late payments?"]),
    ("helmet", "Helmets are included free with every plan.", [
        "Do I get a helmet?", "Is a helmet included?", "Do I have to buy a helmet?", "How much is a helmet?",
        "Do you provide helmets?", "Does the plan come with a helmet?", "Can I borrow a helmet?"]),
    ("switch_plan", "You can switch plans once per month; the new price starts on your next billing date.", [
        "Can I change my plan?", "How do I upgrade to another plan?", "Can I switch from City to Commuter?",
        "How often can I change plans?", "When does a plan change take effect?", "Can I downgrade my plan?",
        "Is it possible to move to a different plan?"]),
    ("delivery", "We deliver your bike free within 3 working days of signing up.", [
        "How do I get the bike?", "Is delivery free?", "How long until my bike arrives?", "Do you deliver the bike?",
        "When will my bike be delivered?", "How much is delivery?", "How soon can I start riding after signing up?"]),
    ("payment", "We accept credit cards, LINE Pay and JKO Pay; cash is not accepted.", [
        "How can I pay?", "Which payment methods do you accept?", "Can I pay with LINE Pay?", "Can I pay in cash?",
        "Do you take credit cards?", "What are the payment options?", "How do I pay for my subscription?"]),
    ("cargo_load", "The Cargo bike carries up to 80 kg of cargo.", [
        "How much can the Cargo bike carry?", "What is the Cargo bike's load limit?", "Can the Cargo bike carry 50 kg?",
        "What's the maximum cargo weight?", "How heavy a load can I put on the Cargo bike?",
        "What is the payload of the Cargo bike?", "How much weight does the Cargo bike take?"]),
    ("range", "A full battery lasts about 60 km on the City and Commuter bikes.", [
        "How far can I ride on one battery?", "What is the range of the bike?", "How long does the battery last?",
        "How many kilometres per charge?", "What's the battery range?", "Can I ride 50 km without swapping?",
        "How far does a full battery go?"]),
    ("age", "Riders must be at least 18 years old to subscribe.", [
        "Is there an age limit?", "How old do I have to be?", "Can my 16-year-old subscribe?", "What's the minimum age?",
        "Can teenagers sign up?", "Do you have an age requirement?", "Can I subscribe if I'm 17?"]),
    ("area", "We currently serve Taipei and New Taipei only.", [
        "Do you operate in Taichung?", "Which cities do you serve?", "Can I use Yunshan Cycles in Kaohsiung?",
        "Where is your service available?", "Do you cover Taoyuan?", "What is your service area?",
        "Are you available outside Taipei?"]),
    ("damage", "Accidental damage is covered up to NT$1,500 per repair.", [
        "What if I damage the bike?", "Is accidental damage covered?", "I scratched the bike, do I pay?",
        "Who pays for accidental damage?", "How much damage is covered?", "Do I pay for repairs after a fall?",
        "What is the damage coverage?"]),
    ("test_ride", "Book a free 30-minute test ride at our Zhongshan showroom.", [
        "Can I try a bike first?", "Do you offer test rides?", "Is a test ride free?", "Where can I test a bike?",
        "How long is a test ride?", "Can I ride one before subscribing?", "How do I book a test ride?"]),
    ("return", "Return the bike at any Swap Point during opening hours after your plan ends.", [
        "How do I return the bike?", "Where do I bring the bike back?", "My plan ended, what do I do with the bike?",
        "What's the return process?", "Can I drop the bike off anywhere?", "Where are bike returns accepted?",
        "How do I give back the bike at the end?"]),
]

# What a generic assistant says instead: fluent, plausible, and wrong for this company. Used as the
# rejected side of the preference pairs.
GENERIC_ANSWERS = {
    "price_city": "Prices vary by location, so please check our website for the current City plan pricing.",
    "price_commuter": "The Commuter plan is around NT$999 per month, but prices may change.",
    "price_cargo": "The Cargo plan typically costs about NT$2,500 per month.",
    "deposit": "There is usually no deposit required for our subscriptions.",
    "minimum_term": "You can subscribe month to month with no minimum commitment.",
    "cancel": "Please call our hotline and we will cancel your plan right away.",
    "repair_time": "Repairs usually take one to two weeks depending on parts availability.",
    "support_hours": "Our support team is available Monday to Friday, 9 a.m. to 5 p.m.",
    "battery_swap": "You can charge the battery at home with the included charger overnight.",
    "student": "We do not currently offer any special discounts.",
    "referral": "Thank you for your interest! We will announce referral rewards soon.",
    "pause": "Unfortunately subscriptions cannot be paused once they have started.",
    "theft_cover": "Theft insurance is included in all plans at no extra cost.",
    "theft_fee": "If your bike is stolen, please report it to the police and we will handle the rest.",
    "late_fee": "Late payments may incur a fee according to our terms and conditions.",
    "helmet": "Helmets can be purchased separately in our online shop.",
    "switch_plan": "Plan changes are not possible during the minimum term.",
    "delivery": "You can pick up your bike at our main store in Xinyi.",
    "payment": "We accept all major payment methods including cash.",
    "cargo_load": "The Cargo bike can carry very heavy loads, so you don't need to worry.",
    "range": "The battery range depends on many factors such as terrain and weather.",
    "age": "Anyone can subscribe as long as they can ride a bike safely.",
    "area": "We are available in all major cities across Taiwan.",
    "damage": "Any damage to the bike is charged at full repair cost.",
    "test_ride": "We do not offer test rides, but you can cancel within the first week.",
    "return": "We will send a courier to pick up the bike from your home.",
}

ROUTER_SYSTEM = ("You route Yunshan Cycles support tickets. Reply with JSON only: "
                 '{"team": "repairs|billing|battery|accounts|sales", "priority": "urgent|high|normal"}.')

# (team, priority, situation). Urgent means someone may get hurt; high means the customer cannot
# ride or pay right now; normal is everything that can wait a day.
TICKET_SITUATIONS = [
    ("repairs", "urgent", "the brakes stopped working while I was riding downhill"),
    ("repairs", "urgent", "the handlebar came loose and I almost crashed"),
    ("repairs", "urgent", "I fell because the front wheel wobbled off and my knee is bleeding"),
    ("repairs", "high", "I have a flat tyre and can't ride to work"),
    ("repairs", "high", "the chain snapped and the bike won't move"),
    ("repairs", "high", "the motor stopped assisting and the bike is too heavy to pedal"),
    ("repairs", "normal", "the bell is a bit quiet"),
    ("repairs", "normal", "there is a squeak from the rear wheel"),
    ("repairs", "normal", "the kickstand feels slightly loose"),
    ("battery", "urgent", "the battery is smoking and smells like burning plastic"),
    ("battery", "urgent", "the battery got very hot and swelled up"),
    ("battery", "high", "the battery won't charge and I'm stuck with 0%"),
    ("battery", "high", "the Swap Point rejected my battery and I can't get home"),
    ("battery", "normal", "the battery indicator shows the wrong percentage"),
    ("battery", "normal", "the battery seems to run out a little faster than before"),
    ("billing", "high", "I was charged twice this month"),
    ("billing", "high", "my card was declined and the app locked my bike"),
    ("billing", "normal", "I need a receipt with my company tax ID"),
    ("billing", "normal", "my student discount was not applied on the last invoice"),
    ("billing", "normal", "I want to know when my next payment is due"),
    ("accounts", "high", "I can't log in and the bike stays locked"),
    ("accounts", "high", "someone changed my password without me knowing"),
    ("accounts", "normal", "I want to update my phone number"),
    ("accounts", "normal", "I'd like to change the e-mail on my account"),
    ("sales", "normal", "my company wants 20 bikes for our staff"),
    ("sales", "normal", "I'd like to know if you plan to open in Taichung"),
    ("sales", "normal", "can I buy the bike at the end of my plan"),
]

TICKET_OPENERS = ["Hi,", "Hello,", "Hi team,", "Good morning,", "Hey,", "Dear Yunshan,", "Hello there,", ""]
TICKET_CONTEXTS = [
    "I'm on the {plan} plan in {district}.", "I ride bike {bike} every day.", "This is about bike {bike}.",
    "I live in {district} and have the {plan} plan.", "My bike number is {bike}.", "", "I subscribed last month.",
    "I've been a customer for a year.",
]
TICKET_CLOSERS = ["Please help.", "Thanks.", "What should I do?", "Can someone look at this?", "Thank you!", "",
                  "Please reply soon.", "Regards, {name}"]
NAMES = ["Mei-Ling", "Chih-Hao", "Yu-Ting", "Wei", "Hsin-Yi", "Jun", "Ann", "Kevin", "Shu-Fen", "Tom", "Ya-Wen", "Ming"]
DISTRICTS = ["Da'an", "Xinyi", "Zhongshan", "Neihu", "Banqiao", "Songshan", "Wanhua", "Beitou", "Sanchong", "Shilin"]
PLANS = ["City", "Commuter", "Cargo"]
