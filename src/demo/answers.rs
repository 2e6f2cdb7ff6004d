//! The demo clinic's answers, written for the mock model: Markdown (the widget renders it),
//! picked by a word of the visitor's question, so a newcomer sees a plausible conversation
//! without a paid model.

const HOURS: &str = "We're open **Monday to Friday, 8 am – 6 pm**, and on **Saturdays from 9 am to 1 pm**.\n\nOutside those hours you can still leave a message here, and we'll get back to you the next working day.";

const BOOKING: &str = "Happy to help you book! Here's how it works:\n\n1. Tell me the **service** (cleaning, check-up, whitening…)\n2. Pick a **day and time** that suits you\n3. You'll get a confirmation by text message\n\nThe next free slots are *Tuesday at 3 pm* and *Thursday at 10:15 am*.";

const PRICES: &str = "Our most asked-for prices:\n\n- Check-up and cleaning: **$95**\n- Whitening session: **$240**\n- Emergency visit: **$120**\n\nMost insurance plans cover check-ups in full — bring your card and we'll check for you.";

const CANCEL: &str = "You can cancel or move an appointment free of charge up to **24 hours** before it. Later than that, a small fee of $25 applies.\n\nWant me to move an appointment for you?";

const HELLO: &str = "Hi there! 👋 I'm the Riverside Dental assistant. I can tell you about our **opening hours**, **prices**, or help you **book an appointment**. What can I do for you?";

const FALLBACK: &str = "Thanks for your message! I'm the demo assistant of Riverside Dental, so my knowledge is limited — try asking about our *opening hours*, *prices*, *cancellations* or *booking an appointment*.\n\nIn a real deployment this answer would come from your own model, streamed token by token exactly like this one.";

/// The answer to `question` (the visitor's last message).
pub fn answer(question: &str) -> String {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    let text = if has(&["hour", "open", "close", "when"]) {
        HOURS
    } else if has(&["cancel", "move", "reschedul"]) {
        CANCEL
    } else if has(&["book", "appointment", "slot", "available"]) {
        BOOKING
    } else if has(&["price", "cost", "how much", "insurance", "$"]) {
        PRICES
    } else if has(&["hello", "hi", "hey"]) && q.split_whitespace().count() <= 4 {
        HELLO
    } else {
        FALLBACK
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn questions_get_the_answer_they_ask_for() {
        assert!(answer("When are you open on Saturday?").contains("Saturdays"));
        assert!(answer("How much is whitening?").contains("$240"));
        assert!(answer("I need to book a cleaning").contains("next free slots"));
        assert!(answer("Can I cancel tomorrow's visit?").contains("24 hours"));
        assert!(answer("Hi").contains("👋"));
        assert!(answer("What is the meaning of life?").contains("demo assistant"));
    }
}
