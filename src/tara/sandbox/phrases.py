"""Phrase banks for the sandbox's tutoring answers, per language and subject.

Real sentences in real script (Devanagari for Hindi, Tamil script for Tamil),
in Tara's voice: a caring tutor who explains step by step with examples
from everyday Indian life. Answers are assembled from these by
:mod:`tara.sandbox.answers`.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBJECTS = ("math", "physics", "chemistry", "general")


@dataclass(frozen=True, slots=True)
class Bank:
    """The sentences of one language."""

    openers: tuple[str, ...]
    closers: tuple[str, ...]
    explanations: dict[str, tuple[str, ...]]
    examples: dict[str, tuple[str, ...]]


ENGLISH = Bank(
    openers=(
        "Great question! Let us work through it together.",
        "Good thinking. Let me explain this step by step.",
        "I am happy you asked this. Let us start from the basics.",
        "Let us solve this slowly, one step at a time.",
    ),
    closers=(
        "Try one more example on your own and tell me what you get.",
        "If any step is unclear, ask me again and we will go over it.",
        "Well done for practising; you are getting better every day.",
        "Remember this idea, it will help you in your exams.",
    ),
    explanations={
        "math": (
            "First, write down what is given and what we need to find.",
            "When we multiply 7 by 8, we add 7 eight times, which gives 56.",
            "A fraction tells us how many equal parts of a whole we have.",
            "To find x, we do the same operation on both sides of the equation.",
            "The area of a rectangle is its length multiplied by its breadth.",
            "The angles of a triangle always add up to 180 degrees.",
        ),
        "physics": (
            "Force is a push or a pull that can change the motion of an object.",
            "Speed is the distance travelled divided by the time taken.",
            "Newton's third law says that every action has an equal and opposite reaction.",
            "Light travels in straight lines, which is why we see sharp shadows.",
            "Friction is the force that slows things down when two surfaces rub together.",
            "Gravity pulls every object towards the centre of the Earth.",
        ),
        "chemistry": (
            "Everything around us is made of tiny particles called atoms.",
            "Water has two hydrogen atoms and one oxygen atom, so its formula is H2O.",
            "An acid tastes sour and turns blue litmus paper red.",
            "In a chemical reaction, new substances with new properties are formed.",
            "When iron reacts with oxygen and moisture, it forms rust.",
            "A base feels soapy and turns red litmus paper blue.",
        ),
        "general": (
            "Let us break the problem into small parts so it is easier to understand.",
            "Reading the question carefully twice helps us avoid silly mistakes.",
            "It helps to connect a new idea to something you already know.",
            "Short notes in your own words help you remember better.",
        ),
    },
    examples={
        "math": (
            "For example, if 12 laddoos are shared equally among 4 friends, each gets 3.",
            "If one kilogram of tomatoes costs 40 rupees, then 3 kilograms cost 120 rupees.",
            "If a batter scores 24 runs in 6 overs, the run rate is 4 runs per over.",
        ),
        "physics": (
            "For example, a swing moves forward when you push it, because you apply a force.",
            "An auto-rickshaw that covers 30 kilometres in one hour has a speed of 30 km/h.",
            "When a ceiling fan is switched off, friction slowly brings it to a stop.",
        ),
        "chemistry": (
            "For example, lemon and tamarind taste sour because they contain acids.",
            "When milk turns into curd, a chemical change has taken place.",
            "An iron gate left in the rain becomes rusty after some days.",
        ),
        "general": (
            "For example, learning one new word a day gives you 365 new words in a year.",
            "Think of learning to ride a bicycle: a little practice every day made it easy.",
        ),
    },
)

HINDI = Bank(
    openers=(
        "बहुत अच्छा सवाल है! चलो, इसे साथ में समझते हैं।",
        "शाबाश, तुमने सही सोचा। मैं इसे कदम दर कदम समझाती हूँ।",
        "मुझे खुशी है कि तुमने यह पूछा। चलो, शुरुआत से समझते हैं।",
        "आओ, इसे धीरे-धीरे एक-एक कदम करके हल करें।",
    ),
    closers=(
        "अब एक और उदाहरण खुद हल करके देखो और मुझे बताओ।",
        "अगर कोई कदम समझ में न आए, तो मुझसे फिर से पूछना।",
        "अभ्यास करते रहो, तुम हर दिन बेहतर हो रहे हो।",
        "इस बात को याद रखना, यह परीक्षा में बहुत काम आएगी।",
    ),
    explanations={
        "math": (
            "सबसे पहले, जो दिया गया है और जो हमें निकालना है, उसे लिख लो।",
            "जब हम 7 को 8 से गुणा करते हैं, तो 7 को आठ बार जोड़ते हैं, जिससे 56 मिलता है।",
            "भिन्न हमें बताती है कि किसी पूरी चीज़ के कितने बराबर हिस्से हमारे पास हैं।",
            "x का मान निकालने के लिए हम समीकरण के दोनों तरफ़ एक ही क्रिया करते हैं।",
            "आयत का क्षेत्रफल उसकी लंबाई और चौड़ाई का गुणनफल होता है।",
            "त्रिभुज के तीनों कोणों का योग हमेशा 180 डिग्री होता है।",
        ),
        "physics": (
            "बल एक धक्का या खिंचाव है जो किसी वस्तु की गति बदल सकता है।",
            "चाल तय की गई दूरी को लगे हुए समय से भाग देने पर मिलती है।",
            "न्यूटन का तीसरा नियम कहता है कि हर क्रिया की बराबर और विपरीत प्रतिक्रिया होती है।",
            "प्रकाश सीधी रेखा में चलता है, इसीलिए हमें साफ़ परछाईं दिखती है।",
            "घर्षण वह बल है जो दो सतहों के रगड़ने पर गति को धीमा करता है।",
            "गुरुत्वाकर्षण हर वस्तु को पृथ्वी के केंद्र की ओर खींचता है।",
        ),
        "chemistry": (
            "हमारे आसपास की हर चीज़ छोटे-छोटे कणों से बनी है जिन्हें परमाणु कहते हैं।",
            "पानी दो हाइड्रोजन परमाणुओं और एक ऑक्सीजन परमाणु से बनता है, इसलिए उसका सूत्र H2O है।",
            "अम्ल का स्वाद खट्टा होता है और वह नीले लिटमस पेपर को लाल कर देता है।",
            "रासायनिक अभिक्रिया में नए गुणों वाले नए पदार्थ बनते हैं।",
            "जब लोहा ऑक्सीजन और नमी के साथ अभिक्रिया करता है, तो जंग बनती है।",
            "क्षार छूने में साबुन जैसा लगता है और लाल लिटमस को नीला कर देता है।",
        ),
        "general": (
            "चलो, सवाल को छोटे-छोटे हिस्सों में बाँटते हैं ताकि समझना आसान हो।",
            "सवाल को दो बार ध्यान से पढ़ने से छोटी गलतियाँ नहीं होतीं।",
            "नई बातों को पहले से जानी हुई चीज़ों से जोड़ना अच्छा तरीका है।",
            "अपने शब्दों में छोटे नोट्स बनाने से बातें ज़्यादा याद रहती हैं।",
        ),
    },
    examples={
        "math": (
            "उदाहरण के लिए, अगर 12 लड्डू 4 दोस्तों में बराबर बाँटे जाएँ, तो हर दोस्त को 3 लड्डू मिलेंगे।",
            "मान लो एक किलो टमाटर 40 रुपये का है, तो 3 किलो टमाटर 120 रुपये के होंगे।",
            "अगर कोई बल्लेबाज़ 6 ओवर में 24 रन बनाए, तो रन रेट 4 रन प्रति ओवर है।",
        ),
        "physics": (
            "उदाहरण के लिए, जब तुम झूले को धक्का देते हो, तो वह आगे बढ़ता है क्योंकि तुमने बल लगाया।",
            "अगर एक ऑटो-रिक्शा एक घंटे में 30 किलोमीटर चलता है, तो उसकी चाल 30 किलोमीटर प्रति घंटा है।",
            "जब पंखा बंद करते हैं, तो घर्षण के कारण वह धीरे-धीरे रुक जाता है।",
        ),
        "chemistry": (
            "उदाहरण के लिए, नींबू और इमली खट्टे होते हैं क्योंकि उनमें अम्ल होता है।",
            "जब दूध दही में बदलता है, तो एक रासायनिक परिवर्तन होता है।",
            "बारिश में छोड़ा गया लोहे का गेट कुछ दिनों बाद जंग खा जाता है।",
        ),
        "general": (
            "उदाहरण के लिए, रोज़ एक नया शब्द सीखने से साल भर में 365 नए शब्द हो जाते हैं।",
            "याद करो तुमने साइकिल चलाना कैसे सीखा था: रोज़ थोड़े अभ्यास से वह आसान हो गया।",
        ),
    },
)

TAMIL = Bank(
    openers=(
        "மிக நல்ல கேள்வி! இதை நாம் சேர்ந்து புரிந்துகொள்வோம்.",
        "நன்றாக யோசித்தாய். இதைப் படிப்படியாக விளக்குகிறேன்.",
        "நீ இதைக் கேட்டது எனக்கு மகிழ்ச்சி. அடிப்படையிலிருந்து தொடங்குவோம்.",
        "வா, இதை ஒவ்வொரு படியாக மெதுவாகத் தீர்ப்போம்.",
    ),
    closers=(
        "இப்போது இன்னொரு உதாரணத்தை நீயே செய்து பார்த்து எனக்குச் சொல்.",
        "எந்தப் படியாவது புரியவில்லை என்றால், என்னிடம் மீண்டும் கேள்.",
        "தொடர்ந்து பயிற்சி செய், நீ ஒவ்வொரு நாளும் முன்னேறுகிறாய்.",
        "இதை நினைவில் வைத்துக்கொள், தேர்வில் இது மிகவும் உதவும்.",
    ),
    explanations={
        "math": (
            "முதலில், கொடுக்கப்பட்டதையும் நாம் கண்டுபிடிக்க வேண்டியதையும் எழுதிக்கொள்.",
            "7 ஐ 8 ஆல் பெருக்கும்போது, 7 ஐ எட்டு முறை கூட்டுகிறோம், அதனால் 56 கிடைக்கிறது.",
            "ஒரு பின்னம், ஒரு முழுப் பொருளின் எத்தனை சம பாகங்கள் நம்மிடம் உள்ளன என்பதைக் காட்டுகிறது.",
            "x இன் மதிப்பைக் கண்டுபிடிக்க, சமன்பாட்டின் இரு பக்கங்களிலும் ஒரே செயலைச் செய்கிறோம்.",
            "செவ்வகத்தின் பரப்பளவு அதன் நீளத்தையும் அகலத்தையும் பெருக்கினால் கிடைக்கும்.",
            "ஒரு முக்கோணத்தின் மூன்று கோணங்களின் கூடுதல் எப்போதும் 180 டிகிரி ஆகும்.",
        ),
        "physics": (
            "விசை என்பது ஒரு பொருளின் இயக்கத்தை மாற்றக்கூடிய தள்ளல் அல்லது இழுத்தல் ஆகும்.",
            "கடந்த தூரத்தை எடுத்துக்கொண்ட நேரத்தால் வகுத்தால் வேகம் கிடைக்கும்.",
            "ஒவ்வொரு வினைக்கும் சமமான எதிர் வினை உண்டு என்று நியூட்டனின் மூன்றாம் விதி கூறுகிறது.",
            "ஒளி நேர்கோட்டில் பயணிக்கிறது, அதனால்தான் நமக்குத் தெளிவான நிழல்கள் தெரிகின்றன.",
            "இரண்டு பரப்புகள் உரசும்போது இயக்கத்தைக் குறைக்கும் விசையே உராய்வு ஆகும்.",
            "புவியீர்ப்பு விசை ஒவ்வொரு பொருளையும் பூமியின் மையத்தை நோக்கி இழுக்கிறது.",
        ),
        "chemistry": (
            "நம்மைச் சுற்றியுள்ள ஒவ்வொரு பொருளும் அணுக்கள் எனப்படும் சிறிய துகள்களால் ஆனது.",
            "நீரில் இரண்டு ஹைட்ரஜன் அணுக்களும் ஒரு ஆக்சிஜன் அணுவும் உள்ளன, எனவே அதன் வாய்ப்பாடு H2O.",
            "அமிலம் புளிப்புச் சுவை கொண்டது, அது நீல லிட்மஸ் தாளைச் சிவப்பாக மாற்றும்.",
            "வேதி வினையில் புதிய பண்புகளுடன் புதிய பொருட்கள் உருவாகின்றன.",
            "இரும்பு ஆக்சிஜனுடனும் ஈரப்பதத்துடனும் வினைபுரியும்போது துரு உருவாகிறது.",
            "காரம் தொடுவதற்கு சோப்பு போல் இருக்கும், அது சிவப்பு லிட்மஸை நீலமாக மாற்றும்.",
        ),
        "general": (
            "கேள்வியைச் சிறிய பகுதிகளாகப் பிரிப்போம், அப்போது புரிந்துகொள்வது எளிது.",
            "கேள்வியை இரண்டு முறை கவனமாகப் படித்தால் சிறிய தவறுகளைத் தவிர்க்கலாம்.",
            "புதிய கருத்துகளை ஏற்கனவே தெரிந்தவற்றுடன் இணைப்பது நல்ல வழி.",
            "உன் சொந்த வார்த்தைகளில் சிறு குறிப்புகள் எழுதினால் நன்றாக நினைவில் இருக்கும்.",
        ),
    },
    examples={
        "math": (
            "உதாரணமாக, 12 லட்டுகளை 4 நண்பர்களுக்குச் சமமாகப் பிரித்தால், ஒவ்வொருவருக்கும் 3 கிடைக்கும்.",
            "ஒரு கிலோ தக்காளி 40 ரூபாய் என்றால், 3 கிலோ தக்காளி 120 ரூபாய் ஆகும்.",
            "ஒரு வீரர் 6 ஓவர்களில் 24 ரன்கள் எடுத்தால், அவரது ரன் விகிதம் ஓவருக்கு 4 ரன்கள்.",
        ),
        "physics": (
            "உதாரணமாக, ஊஞ்சலைத் தள்ளும்போது நீ விசை செலுத்துவதால் அது முன்னே செல்கிறது.",
            "ஒரு ஆட்டோ ஒரு மணி நேரத்தில் 30 கிலோமீட்டர் சென்றால், அதன் வேகம் மணிக்கு 30 கிலோமீட்டர்.",
            "மின்விசிறியை அணைத்தவுடன், உராய்வினால் அது மெதுவாக நின்றுவிடுகிறது.",
        ),
        "chemistry": (
            "உதாரணமாக, எலுமிச்சையும் புளியும் புளிப்பாக இருப்பதற்குக் காரணம் அவற்றில் உள்ள அமிலம்.",
            "பால் தயிராக மாறும்போது, ஒரு வேதியியல் மாற்றம் நிகழ்கிறது.",
            "மழையில் விடப்பட்ட இரும்புக் கதவு சில நாட்களில் துருப்பிடிக்கிறது.",
        ),
        "general": (
            "உதாரணமாக, தினமும் ஒரு புதிய சொல் கற்றால், ஒரு வருடத்தில் 365 புதிய சொற்கள் தெரியும்.",
            "நீ சைக்கிள் ஓட்டக் கற்றதை நினைத்துப் பார்: தினமும் கொஞ்சம் பயிற்சி செய்ததால் அது எளிதானது.",
        ),
    },
)

BANKS: dict[str, Bank] = {"en": ENGLISH, "hi": HINDI, "ta": TAMIL}
