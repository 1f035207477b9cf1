"""WTForms forms (CSRF comes with FlaskForm)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired()])


class ReplyForm(FlaskForm):
    body = TextAreaField("Message", validators=[DataRequired(), Length(max=4096)])


class SandboxMessageForm(FlaskForm):
    phone = StringField("Patient phone", validators=[DataRequired(), Length(max=32)])
    name = StringField("Patient name", validators=[Length(max=100)])
    text = TextAreaField("Message", validators=[DataRequired(), Length(max=4096)])


class CannedReplyForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=80)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=4096)])


class ContactNotesForm(FlaskForm):
    notes = TextAreaField("Notes", validators=[Length(max=5000)])


# --- appointments (issue 6) --------------------------------------------------------------------

from wtforms import DateField, IntegerField, SelectChoice, SelectField, TimeField  # noqa: E402
from wtforms.validators import NumberRange, Optional  # noqa: E402

LANGUAGE_CHOICES = [
    SelectChoice("", "Clinic default"),
    SelectChoice("en", "English"),
    SelectChoice("es", "Español"),
    SelectChoice("pt", "Português"),
    SelectChoice("hi", "हिन्दी"),
]
MODE_CHOICES = [SelectChoice("in_person", "In person"), SelectChoice("video", "Video call")]
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_CHOICES = [SelectChoice(str(i), d) for i, d in enumerate(WEEKDAYS)]


class BookingForm(FlaskForm):
    therapist_id = SelectField("Therapist", coerce=int, validators=[DataRequired()])
    date = DateField("Date", validators=[DataRequired(message="Choose a date.")])
    time = TimeField("Time", validators=[DataRequired(message="Choose a time.")])
    duration = IntegerField("Minutes", validators=[Optional(), NumberRange(min=5, max=480)])
    patient_name = StringField(
        "Patient name", validators=[DataRequired(message="Enter the patient's name."), Length(max=200)]
    )
    patient_phone = StringField(
        "Mobile phone", validators=[DataRequired(message="Enter a phone number."), Length(max=32)]
    )
    patient_email = EmailField("Email (optional)", validators=[Optional(), Length(max=254)])
    language = SelectField("Language for messages", choices=LANGUAGE_CHOICES, default="")
    mode = SelectField("Type", choices=MODE_CHOICES, default="in_person")
    location = StringField("Place (in person)", validators=[Optional(), Length(max=300)])
    video_url = StringField("Video link", validators=[Optional(), Length(max=500)])


class RescheduleForm(FlaskForm):
    date = DateField("New date", validators=[DataRequired(message="Choose a date.")])
    time = TimeField("New time", validators=[DataRequired(message="Choose a time.")])


class AvailabilityForm(FlaskForm):
    kind = SelectField(
        "What",
        choices=[
            SelectChoice("weekly", "Weekly hours"),
            SelectChoice("one_off", "Extra hours on a date"),
            SelectChoice("blocked", "Blocked time"),
        ],
    )
    weekday = SelectField("Day of the week", choices=WEEKDAY_CHOICES, default="0")
    day = DateField("Date", validators=[Optional()])
    start_time = TimeField("From", validators=[DataRequired(message="Choose a start time.")])
    end_time = TimeField("To", validators=[DataRequired(message="Choose an end time.")])
    note = StringField("Note", validators=[Optional(), Length(max=200)])


class ApiKeyForm(FlaskForm):
    name = StringField("What is it for?", validators=[DataRequired(message="Name the key."), Length(max=100)])


class ReminderSettingsForm(FlaskForm):
    offsets = StringField("Reminders before the appointment", validators=[DataRequired(), Length(max=100)])
    quiet_start = TimeField("Quiet hours from", validators=[Optional()])
    quiet_end = TimeField("Quiet hours until", validators=[Optional()])
    slot_minutes = IntegerField(
        "Slot length (minutes)", validators=[DataRequired(), NumberRange(min=5, max=480)]
    )


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""
