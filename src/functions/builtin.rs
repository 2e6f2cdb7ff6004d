//! The built-in demo functions named by the seed's VAPI handler. They answer from the hub's
//! own demo tables (customers, appointments, departments), so results change with the data.

use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike, Weekday};
use serde_json::{Value, json};

use super::{CallContext, Outcome};
use crate::config::{FunctionHandler, FunctionSpec};
use crate::store::{Booking, Store};

pub const NAMES: &[&str] = &["lookupCustomer", "bookAppointment", "transferCall"];

/// Opening hours of the demo practice: half-hour slots, 08:00 to 16:30, Monday to Friday.
const FIRST_SLOT: (u32, u32) = (8, 0);
const LAST_SLOT: (u32, u32) = (16, 30);

pub fn spec(name: &str, timeout: Duration) -> Option<FunctionSpec> {
    let (description, parameters) = match name {
        "lookupCustomer" => (
            "Find a customer by phone number (defaults to the caller) or by name.",
            json!({ "type": "object", "properties": {
                "phone": { "type": "string", "description": "E.164 number, e.g. +14155550123" },
                "name": { "type": "string" } } }),
        ),
        "bookAppointment" => (
            "Book a half-hour appointment on a weekday between 08:00 and 16:30.",
            json!({ "type": "object", "required": ["date", "time"], "properties": {
                "date": { "type": "string", "description": "YYYY-MM-DD" },
                "time": { "type": "string", "description": "HH:MM, 24-hour, on the hour or half hour" },
                "service": { "type": "string", "description": "e.g. cleaning, checkup" },
                "phone": { "type": "string", "description": "defaults to the caller" } } }),
        ),
        "transferCall" => (
            "Look up where to transfer the caller: a department's number or SIP address.",
            json!({ "type": "object", "properties": {
                "department": { "type": "string", "enum": ["front-desk", "billing", "emergencies"] } } }),
        ),
        _ => return None,
    };
    Some(FunctionSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters,
        handler: FunctionHandler::Builtin(name.to_string()),
        timeout,
    })
}

pub async fn run(name: &str, args: &Value, ctx: &CallContext, store: &dyn Store) -> Outcome {
    let result = match name {
        "lookupCustomer" => lookup_customer(args, ctx, store).await,
        "bookAppointment" => book_appointment(args, ctx, store).await,
        "transferCall" => transfer_call(args, store).await,
        other => Err(format!("Unknown built-in {other:?}.")),
    };
    match result {
        Ok(s) => Outcome::Ok(s),
        Err(e) => Outcome::Err(e),
    }
}

fn arg<'a>(args: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| args.get(*k).and_then(Value::as_str)).map(str::trim).filter(|s| !s.is_empty())
}

const UNAVAILABLE: &str = "The records system is unavailable right now.";

async fn lookup_customer(args: &Value, ctx: &CallContext, store: &dyn Store) -> Result<String, String> {
    let phone = arg(args, &["phone", "phoneNumber", "customerPhone", "patientPhone"]).or(ctx.customer_number.as_deref());
    let name = arg(args, &["name", "customerName"]);
    if phone.is_none() && name.is_none() {
        return Err("Give a phone number or a name to look up.".into());
    }
    let found = store.find_customer(phone, name).await.map_err(|_| UNAVAILABLE.to_string())?;
    Ok(match found {
        Some(c) => json!({ "found": true, "name": c.name, "phone": c.phone, "email": c.email, "notes": c.notes }).to_string(),
        None => json!({ "found": false }).to_string(),
    })
}

async fn book_appointment(args: &Value, ctx: &CallContext, store: &dyn Store) -> Result<String, String> {
    let date_s = arg(args, &["date"]).ok_or("A date (YYYY-MM-DD) is needed.")?;
    let time_s = arg(args, &["time"]).ok_or("A time (HH:MM) is needed.")?;
    let date = NaiveDate::parse_from_str(date_s, "%Y-%m-%d").map_err(|_| format!("{date_s:?} is not a date like 2026-03-17."))?;
    let time = NaiveTime::parse_from_str(time_s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(time_s, "%H:%M:%S"))
        .map_err(|_| format!("{time_s:?} is not a time like 15:00."))?;
    if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        return Err(format!("We are closed on {}s.", date.weekday()));
    }
    let slot = (time.hour(), time.minute());
    if !(time.minute() == 0 || time.minute() == 30) || slot < FIRST_SLOT || slot > LAST_SLOT || time.second() != 0 {
        return Err("Appointments start on the hour or half hour between 08:00 and 16:30.".into());
    }
    let phone = arg(args, &["phone", "phoneNumber", "customerPhone", "patientPhone"])
        .or(ctx.customer_number.as_deref())
        .ok_or("A phone number is needed to book.")?;
    let service = arg(args, &["service", "reason"]).unwrap_or("appointment");
    let day = date.format("%Y-%m-%d").to_string();
    let starts_at = format!("{day}T{:02}:{:02}", slot.0, slot.1);
    match store.book_appointment(phone, &starts_at, service, crate::clock::now_ms()).await.map_err(|_| UNAVAILABLE.to_string())? {
        Booking::Booked { id } => {
            let who = store.find_customer(Some(phone), None).await.ok().flatten().map(|c| c.name).unwrap_or_else(|| phone.to_string());
            Ok(format!("Booked {service} for {who} on {day} at {:02}:{:02}. Confirmation number {id}.", slot.0, slot.1))
        }
        Booking::SlotTaken => {
            let taken = store.booked_slots(&day).await.unwrap_or_default();
            let open = open_slots(&day, &taken);
            if open.is_empty() {
                Err(format!("{day} is fully booked."))
            } else {
                Err(format!("{:02}:{:02} on {day} is taken. Open times that day: {}.", slot.0, slot.1, open.join(", ")))
            }
        }
    }
}

fn open_slots(day: &str, taken: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let (mut h, mut m) = FIRST_SLOT;
    while (h, m) <= LAST_SLOT {
        let label = format!("{h:02}:{m:02}");
        if !taken.iter().any(|t| t == &format!("{day}T{label}")) {
            out.push(label);
        }
        (h, m) = if m == 30 { (h + 1, 0) } else { (h, 30) };
    }
    out
}

async fn transfer_call(args: &Value, store: &dyn Store) -> Result<String, String> {
    let department = arg(args, &["department", "destination", "to"]).unwrap_or("front-desk").to_lowercase().replace(' ', "-");
    match store.find_department(&department).await.map_err(|_| UNAVAILABLE.to_string())? {
        Some(d) => {
            let destination = match (&d.number, &d.sip_uri) {
                (Some(n), _) => json!({ "type": "number", "number": n }),
                (None, Some(s)) => json!({ "type": "sip", "sipUri": s }),
                (None, None) => return Err(format!("{} has no number configured.", d.name)),
            };
            Ok(json!({ "department": d.name, "destination": destination }).to_string())
        }
        None => Err(format!("There is no department called {department:?}.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_slots_skip_the_booked_ones() {
        let open = open_slots("2026-03-17", &["2026-03-17T08:00".into(), "2026-03-17T15:00".into()]);
        assert_eq!(open.first().map(String::as_str), Some("08:30"));
        assert!(!open.contains(&"15:00".to_string()));
        assert_eq!(open.len(), 18 - 2);
    }

    #[test]
    fn every_builtin_has_an_object_schema() {
        for n in NAMES {
            let s = spec(n, Duration::from_secs(1)).unwrap();
            assert_eq!(s.parameters["type"], "object");
        }
    }
}
