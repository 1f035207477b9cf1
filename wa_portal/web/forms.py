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
